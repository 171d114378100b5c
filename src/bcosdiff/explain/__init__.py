"""Explanations of generated images: the B-cos explanation of whole sampling runs and the
post-hoc methods it is compared with, behind one attribution API
(:mod:`bcosdiff.explain.methods`)."""

from .explanation import Explanation, build_attribution, build_explanation
from .gradcam import DFCam
from .linear_map import (
    RunExplanation,
    explain_run,
    normalized_reconstruction,
    patch_backward_contributions,
)
from .methods import AttributionMethod, BcosAttribution, GradientInput
from .registry import METHODS, get_method, register_method
from .rise import DFRise
from .run import GeneratedRun
from .trajectory import RunSources, run_trajectory
from .xattn import CrossAttentionMaps

__all__ = [
    "METHODS",
    "AttributionMethod",
    "BcosAttribution",
    "CrossAttentionMaps",
    "DFCam",
    "DFRise",
    "Explanation",
    "GeneratedRun",
    "GradientInput",
    "RunExplanation",
    "RunSources",
    "build_attribution",
    "build_explanation",
    "explain_run",
    "get_method",
    "normalized_reconstruction",
    "patch_backward_contributions",
    "register_method",
    "run_trajectory",
]
