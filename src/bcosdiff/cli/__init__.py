"""The ``bcosdiff`` command line.

Bad input never shows a traceback: usage errors and :class:`~bcosdiff.errors.BcosdiffError`
are printed as one ``bcosdiff: error: ...`` line on stderr with exit status 2, and so are the
file system's refusals (a destination that cannot be created or written).

One module per group of commands: :mod:`.images` (generate, explain, serve), :mod:`.models`
(train, export, info), :mod:`.data`, :mod:`.evaluate` and :mod:`.sae` (the ``data``,
``eval`` and ``sae`` groups); :mod:`.options` holds the options they share and
:mod:`.output` how they write. Every module imports torch and the models only inside the
commands, so ``--help`` and argument errors stay fast.
"""

from __future__ import annotations

import sys
import warnings
from typing import Annotated

import typer

from .. import __version__
from ..errors import BcosdiffError
from . import data, evaluate, images, models, sae
from .output import note

app = typer.Typer(
    name="bcosdiff",
    help="Inherently interpretable text-to-image diffusion with B-cos U-Nets.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for command in (
    images.generate,
    images.explain,
    images.serve,
    models.info,
    models.train,
    models.export,
):
    app.command()(command)
app.add_typer(data.app, name="data")
app.add_typer(evaluate.app, name="eval")
app.add_typer(sae.app, name="sae")


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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    note(" ".join(str(message).split()), "warning")


def _fail(message: str) -> int:
    print(f"bcosdiff: error: {message}", file=sys.stderr)
    return 2


def _os_message(exc: OSError) -> str:
    reason = exc.strerror or " ".join(str(exc).split())
    if exc.filename is None:
        return reason
    return f"cannot create, write or read {exc.filename}: {reason}"


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # one "bcosdiff: warning:" line each
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
    except OSError as exc:  # a destination that cannot be created, written or read
        return _fail(_os_message(exc))
    return result if isinstance(result, int) else 0


def run() -> None:
    """``bcosdiff`` console script."""
    sys.exit(main())
