"""``train``, ``export`` and ``info``: make model directories and read them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import BcosdiffError
from .options import ProgressOption


def train(
    config: Annotated[Path, typer.Argument(help="Training config (.yaml, .toml or .json).")],
    output_dir: Annotated[
        str | None, typer.Option(help="Override the config's output_dir.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Override the config's steps.")] = None,
    progress: ProgressOption = True,
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


def info(
    model: Annotated[str, typer.Argument(help="Model directory or bundled model name.")],
    words: Annotated[
        bool, typer.Option(help="Print the words of the model's training captions instead.")
    ] = False,
) -> None:
    """Print a model directory's configuration and size."""
    import json

    from ..modeldir import load_unet, read_config
    from ..pipeline import resolve_model

    directory = resolve_model(model)
    config = read_config(directory)
    explain = config.get("explain")
    vocabulary = explain.get("vocabulary") if isinstance(explain, dict) else None
    if words:
        if vocabulary is None:
            raise BcosdiffError(f"{model} lists no vocabulary (trained on open-ended captions)")
        typer.echo("\n".join(vocabulary))
        return
    if isinstance(vocabulary, list):  # a count here; --words prints the list
        config["explain"] = {**explain, "vocabulary": f"{len(vocabulary)} words (--words)"}
    unet = load_unet(directory)
    params = sum(p.numel() for p in unet.parameters())
    typer.echo(json.dumps(config, indent=2, sort_keys=True))
    typer.echo(f"parameters: {params:,}")
