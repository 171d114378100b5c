"""Explanations of whole sampling runs: reconstruction, relevance, token heat maps."""

from .explanation import RunExplanation, explain_run, normalized_reconstruction
from .trajectory import RunSources, run_trajectory

__all__ = [
    "RunExplanation",
    "RunSources",
    "explain_run",
    "normalized_reconstruction",
    "run_trajectory",
]
