"""Explanations of generated images: the B-cos explanation of whole sampling runs and the
post-hoc methods it is compared with, behind one attribution API
(:mod:`bcosdiff.explain.methods`)."""

from .explanation import (
    RunExplanation,
    explain_run,
    normalized_reconstruction,
    patch_backward_contributions,
)
from .gradcam import DFCam
from .methods import (
    METHODS,
    AttributionMethod,
    BcosAttribution,
    GradientInput,
    get_method,
    register_method,
)
from .report import Explanation, build_attribution, build_explanation
from .rise import DFRise
from .run import GeneratedRun
from .trajectory import RunSources, run_trajectory
from .xattn import CrossAttentionMaps

register_method("xattn", CrossAttentionMaps)
register_method("dfrise", DFRise)
register_method("dfcam", DFCam)

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
