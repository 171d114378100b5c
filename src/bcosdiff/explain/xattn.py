"""Cross-attention maps (DAAM, Tang et al. 2023): where each prompt token was attended.

For every step of the run and every cross-attention layer and head, the attention
probabilities of each context position over the image positions (``(heads, N, L)``) are
reshaped to the layer's square grid, upsampled bicubically to the image size and clamped
at 0; the token map is their mean over steps, layers and heads. A token's relevance is its
share of the summed maps. Sub-word pieces add up (a word's map is the attention mass on
the word); DAAM averages them instead, which only rescales a word's map.

The U-Net is evaluated once more at every stored ``x_t`` of the run, all steps in one batch,
with an attention observer (:func:`~bcosdiff.bcos.observe_attention`): the probabilities
are those of the generated run, and its output is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..bcos import observe_attention
from ..dictionary.steering import apply_steering
from .explanation import Explanation, build_attribution
from .methods import AttributionMethod, AttributionOptions
from .run import GeneratedRun

__all__ = ["CrossAttentionMaps", "CrossAttentionOptions", "cross_attention_maps"]


def cross_attention_maps(pipe, run: GeneratedRun, batch: int = 32) -> tuple[Tensor, int]:
    """``((L, H, W) mean upsampled probabilities, number of (step, layer, head) maps)``."""
    states = run.states
    size = pipe.sample_size
    length = run.conditioning.embeddings.shape[1]
    total = torch.zeros(length, size, size)
    count = 0

    def observe(name, module, probs: Tensor) -> None:
        nonlocal total, count
        rows, heads, positions, tokens = probs.shape
        side = math.isqrt(positions)
        if side * side != positions:
            raise ValueError(f"layer {name} attends over {positions} positions, not a square")
        grid = probs.sum(1).transpose(1, 2).reshape(rows, tokens, side, side)  # heads summed
        up = F.interpolate(grid.float(), size=(size, size), mode="bicubic", align_corners=False)
        # Bicubic overshoot below 0 is clamped per (step, layer) map, as DAAM clamps.
        total += up.clamp(min=0).sum(0).cpu()
        count += rows * heads

    device = run.x_T.device
    with torch.no_grad(), observe_attention(pipe.unet, observe) as layers:
        if not layers:
            raise ValueError("the U-Net has no cross-attention layer")
        for first in range(0, len(states), batch):
            chunk = states[first : first + batch]
            x_t = torch.cat([s.x_t for s in chunk]).to(device)
            t = torch.tensor([s.t for s in chunk], device=device)
            with apply_steering(pipe.unet, run.steering):
                pipe.unet(x_t, t, *run.context(len(chunk)))
    return total / max(count, 1), count


@dataclass(frozen=True, kw_only=True)
class CrossAttentionOptions(AttributionOptions):
    """Cross-attention settings: ``batch`` stored steps per observing U-Net call."""

    batch: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch < 1:
            raise ValueError("batch must be at least 1")


class CrossAttentionMaps(AttributionMethod):
    """DAAM-style token maps from the run's cross-attention probabilities."""

    name = "xattn"
    Options = CrossAttentionOptions

    def _attribute(self, run: GeneratedRun, options: CrossAttentionOptions) -> Explanation:
        maps, _ = cross_attention_maps(self.pipe, run, options.batch)
        scores = maps.sum(dim=(1, 2))
        return build_attribution(
            run, self.masked, self.pipe.name, self.name, scores=scores, maps=maps
        )
