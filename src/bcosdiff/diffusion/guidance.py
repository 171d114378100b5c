"""Classifier-free guidance: ``pred = pred_uncond + w·(pred_cond - pred_uncond)``.

The unconditional branch is the same network with an *empty* conditioning: every context
position masked. A fully masked cross-attention layer outputs exactly zero
(:class:`~bcosdiff.bcos.Attention`), so that branch sees no prompt at all; training learns
it by dropping the prompt of a sample with a small probability (``prompt_dropout``).

For a B-cos U-Net both branches are dynamic linear maps, and the combination has the fixed
coefficients ``(1 - w, w)``, so a guided run is still one dynamic linear map of its sources:
the prompt enters through the conditional branch only (scaled by ``w``); the unconditional
branch contributes through ``x_t`` (hence ``x_T``), the time features and ``μ``.

``w = 1`` is the conditional prediction itself, computed without the unconditional branch,
so an unguided run is bit for bit the run without guidance.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "Denoise",
    "check_guidance",
    "drop_prompts",
    "empty_conditioning",
    "guided_prediction",
]

Denoise = Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]
"""``denoise(x_t, time input, context, context_mask) -> prediction`` (rows are samples)."""


def check_guidance(scale: float) -> float:
    """``scale`` as a float; guidance scales below 0 or not finite are refused."""
    scale = float(scale)
    if not (scale >= 0 and scale != float("inf")):
        raise ValueError(f"guidance must be a finite number >= 0, got {scale}")
    return scale


def empty_conditioning(context: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """The unconditional input of the same shape: zero embeddings, every position masked."""
    empty_mask = torch.zeros(context.shape[:2], dtype=torch.bool, device=context.device)
    return torch.zeros_like(context), empty_mask


def drop_prompts(
    context: Tensor, mask: Tensor, probability: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Training's side of guidance: each row's prompt replaced by the empty conditioning
    with ``probability`` (one draw per row from ``generator``, on the CPU)."""
    drop = (torch.rand(context.shape[0], generator=generator) < probability).to(context.device)
    empty, empty_mask = empty_conditioning(context, mask)
    return (
        torch.where(drop[:, None, None], empty, context),
        torch.where(drop[:, None], empty_mask, mask),
    )


def guided_prediction(
    denoise: Denoise,
    x_t: Tensor,
    time: Tensor,
    context: Tensor,
    mask: Tensor | None,
    scale: float,
    batched: bool = True,
) -> Tensor:
    """The guided prediction for the rows of ``x_t`` (``time`` indexed like them).

    ``batched`` computes both branches in one network call (conditional rows first);
    otherwise in two calls, which a linear replay needs: there each call's dynamic factors
    come from its own first row, the real run's conditional or unconditional branch.
    """
    if scale == 1:
        return denoise(x_t, time, context, mask)
    empty, empty_mask = empty_conditioning(context, mask)
    if mask is None:
        mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
    if batched:
        both = denoise(
            torch.cat([x_t, x_t]),
            torch.cat([time, time]),
            torch.cat([context, empty]),
            torch.cat([mask, empty_mask]),
        )
        cond, uncond = both.chunk(2)
    else:
        cond = denoise(x_t, time, context, mask)
        uncond = denoise(x_t, time, empty, empty_mask)
    return uncond + scale * (cond - uncond)
