"""bcosdiff: inherently interpretable text-to-image diffusion with B-cos U-Nets."""

__version__ = "0.1.0"

from .errors import BcosdiffError, ModelLoadError  # noqa: E402
from .pipeline import Pipeline, load_pipeline  # noqa: E402

__all__ = ["BcosdiffError", "ModelLoadError", "Pipeline", "__version__", "load_pipeline"]
