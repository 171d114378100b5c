"""Explanations of generated images: the B-cos explanation of whole sampling runs and the
post-hoc methods it is compared with, behind one attribution API
(:mod:`bcosdiff.explain.methods`)."""

from .explanation import Explanation, build_attribution, build_explanation
from .gradcam import CamOptions, DFCam
from .linear_map import (
    RunExplanation,
    explain_run,
    normalized_reconstruction,
    patch_backward_contributions,
)
from .methods import (
    SCORES_ONLY,
    AttributionMethod,
    AttributionOptions,
    BcosAttribution,
    BcosOptions,
    GradientInput,
    WholeRunOptions,
)
from .registry import METHODS, get_method, register_method
from .rise import DFRise, RiseOptions
from .run import GeneratedRun
from .trajectory import RunSources, run_trajectory
from .xattn import CrossAttentionMaps, CrossAttentionOptions

__all__ = [
    "METHODS",
    "AttributionMethod",
    "AttributionOptions",
    "BcosAttribution",
    "BcosOptions",
    "CamOptions",
    "CrossAttentionMaps",
    "CrossAttentionOptions",
    "DFCam",
    "DFRise",
    "Explanation",
    "GeneratedRun",
    "GradientInput",
    "RunExplanation",
    "RiseOptions",
    "SCORES_ONLY",
    "RunSources",
    "build_attribution",
    "build_explanation",
    "explain_run",
    "get_method",
    "normalized_reconstruction",
    "patch_backward_contributions",
    "register_method",
    "run_trajectory",
    "WholeRunOptions",
]
