"""The ``bcosdiff`` command line.

Bad input never shows a traceback: usage errors and :class:`~bcosdiff.errors.BcosdiffError`
are printed as one ``bcosdiff: error: ...`` line on stderr with exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .errors import BcosdiffError

app = typer.Typer(
    name="bcosdiff",
    help="Inherently interpretable text-to-image diffusion with B-cos U-Nets.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ModelOption = Annotated[
    str | None, typer.Option("--model", "-m", help="Model directory (or bundled model name).")
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bcosdiff {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Inherently interpretable text-to-image diffusion with B-cos U-Nets."""


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="The text prompt.")],
    model: ModelOption = None,
    steps: Annotated[int, typer.Option(help="DDIM steps (deterministic, σ_t = 0).")] = 25,
    seed: Annotated[int, typer.Option(help="Seed of the initial noise.")] = 0,
    out: Annotated[Path, typer.Option(help="Output PNG file.")] = Path("image.png"),
) -> None:
    """Generate an image for PROMPT."""
    from .pipeline import check_generation_args, load_pipeline

    check_generation_args(prompt, steps, seed)
    pipe = load_pipeline(model)
    image = pipe.generate(prompt, steps=steps, seed=seed)
    _save_image(image, out)
    typer.echo(str(out))


@app.command()
def info(model: Annotated[str, typer.Argument(help="Model directory.")]) -> None:
    """Print a model directory's configuration and size."""
    import json

    from .modeldir import load_unet, read_config

    config = read_config(Path(model))
    unet = load_unet(Path(model))
    params = sum(p.numel() for p in unet.parameters())
    typer.echo(json.dumps(config, indent=2, sort_keys=True))
    typer.echo(f"parameters: {params:,}")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Training config (.yaml, .toml or .json).")],
    output_dir: Annotated[
        str | None, typer.Option(help="Override the config's output_dir.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Override the config's steps.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train (or resume) a model; the EMA weights are exported to OUTPUT_DIR/model."""
    from .training import TrainConfig, load_train_config
    from .training import train as run_training

    settings = load_train_config(config).to_dict()
    if output_dir is not None:
        settings["output_dir"] = output_dir
    if steps is not None:
        settings["steps"] = steps
    model_dir = run_training(TrainConfig.from_dict(settings), progress=progress)
    typer.echo(str(model_dir))


def _save_image(image, out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save(out, format="PNG")
    except OSError as exc:
        raise BcosdiffError(f"cannot write {out}: {exc.strerror or exc}") from None


def _fail(message: str) -> int:
    print(f"bcosdiff: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="bcosdiff")
    except typer.Abort:
        return _fail("aborted")
    except typer.TyperException as exc:  # usage errors of the (vendored) click layer
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message())
            return 0
        return _fail(" ".join(exc.format_message().split()))
    except BcosdiffError as exc:
        return _fail(" ".join(str(exc).split()))
    except KeyboardInterrupt:
        return _fail("interrupted")
    return result if isinstance(result, int) else 0


def run() -> None:
    """``bcosdiff`` console script."""
    sys.exit(main())
