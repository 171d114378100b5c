"""``train``, ``export`` and ``info``: make model directories and read them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train(
    config: Annotated[Path, typer.Argument(help="Training config (.yaml, .toml or .json).")],
    output_dir: Annotated[
        str | None, typer.Option(help="Override the config's output_dir.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Override the config's steps.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train (or resume) a model; the EMA weights are exported to OUTPUT_DIR/model."""
    from ..training import TrainConfig, load_train_config
    from ..training import train as run_training

    settings = load_train_config(config).to_dict()
    if output_dir is not None:
        settings["output_dir"] = output_dir
    if steps is not None:
        settings["steps"] = steps
    import shlex

    # The recorded command leaves out --output-dir: where a run is stored does not change it.
    command = shlex.join(
        ["bcosdiff", "train", str(config)] + (["--steps", str(steps)] if steps is not None else [])
    )
    model_dir = run_training(TrainConfig.from_dict(settings), progress=progress, command=command)
    typer.echo(str(model_dir))


def export(
    run_dir: Annotated[Path, typer.Argument(help="Training output directory.")],
    out: Annotated[Path, typer.Argument(help="Model directory to write.")],
    weights: Annotated[str, typer.Option(help="'ema' or 'model' weights.")] = "ema",
    checkpoint: Annotated[
        str | None, typer.Option(help="e.g. step-00001000 (default: latest)")
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(help="Default guidance scale of the model (default: the training config's)."),
    ] = None,
    keep_card: Annotated[
        bool, typer.Option(help="Keep the MODEL_CARD.md that OUT already has.")
    ] = False,
) -> None:
    """Export a training checkpoint as a model directory."""
    from ..training import export_checkpoint

    written = export_checkpoint(
        run_dir, out, weights=weights, checkpoint=checkpoint, guidance=guidance, keep_card=keep_card
    )
    typer.echo(str(written))


def info(model: Annotated[str, typer.Argument(help="Model directory.")]) -> None:
    """Print a model directory's configuration and size."""
    import json

    from ..modeldir import load_unet, read_config

    config = read_config(Path(model))
    unet = load_unet(Path(model))
    params = sum(p.numel() for p in unet.parameters())
    typer.echo(json.dumps(config, indent=2, sort_keys=True))
    typer.echo(f"parameters: {params:,}")
