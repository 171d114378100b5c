"""B-cos primitives: layers, norms, gates, attention and the explanation-mode switch."""

from .attention import Attention, explicit_attention, observe_attention
from .gates import GEGLU, GatedSiLU
from .layers import BcosConv2d, BcosLinear, bcos_scale, fused_layers
from .mode import (
    DetachableModule,
    explanation_mode,
    is_explanation_mode,
    linear_replay,
    set_explanation_mode,
)
from .norms import CentredGroupNorm, CentredLayerNorm, UncentredGroupNorm, UncentredLayerNorm

__all__ = [
    "Attention",
    "BcosConv2d",
    "BcosLinear",
    "CentredGroupNorm",
    "CentredLayerNorm",
    "DetachableModule",
    "GEGLU",
    "GatedSiLU",
    "UncentredGroupNorm",
    "UncentredLayerNorm",
    "bcos_scale",
    "explanation_mode",
    "explicit_attention",
    "fused_layers",
    "is_explanation_mode",
    "linear_replay",
    "observe_attention",
    "set_explanation_mode",
]
