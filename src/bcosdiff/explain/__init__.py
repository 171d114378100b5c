"""Explanations of whole sampling runs: reconstruction, relevance, token heat maps."""

from .explanation import (
    RunExplanation,
    explain_run,
    normalized_reconstruction,
    patch_backward_contributions,
)
from .report import Explanation, build_explanation
from .trajectory import RunSources, run_trajectory

__all__ = [
    "Explanation",
    "build_explanation",
    "RunExplanation",
    "RunSources",
    "explain_run",
    "normalized_reconstruction",
    "patch_backward_contributions",
    "run_trajectory",
]
