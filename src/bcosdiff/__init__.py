"""bcosdiff: inherently interpretable text-to-image diffusion with B-cos U-Nets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import BcosdiffError, ModelLoadError

__version__ = "0.1.0"
__all__ = [
    "BcosdiffError",
    "ModelLoadError",
    "Pipeline",
    "RunRequest",
    "__version__",
    "explain_prompt",
    "load_pipeline",
]

if TYPE_CHECKING:
    from .pipeline import Pipeline, load_pipeline
    from .request import RunRequest
    from .service import explain_prompt


def __getattr__(name: str):
    # The pipeline pulls in torch and diffusers (seconds): imported on first use, so that
    # `bcosdiff --help` and argument errors answer at once.
    if name in ("Pipeline", "load_pipeline"):
        from . import pipeline, report  # noqa: F401 - the report registers the notebook view

        return getattr(pipeline, name)
    if name == "explain_prompt":
        from . import report, service  # noqa: F401 - as above

        return service.explain_prompt
    if name == "RunRequest":
        from .request import RunRequest

        return RunRequest
    raise AttributeError(f"module 'bcosdiff' has no attribute {name!r}")
