"""Insertion and deletion games on one step of a run (as X-Diffusion scores DF-RISE/DF-CAM).

At step ``k`` (input ``x_t``) the pixels are ordered by decreasing saliency and changed in
``H`` chunks of ``W`` pixels (``H + 1`` points including the start):

* **deletion** — from ``x_t``, the pixels are set to the process mean ``μ`` (``z = 0``, the
  counterpart of zeroed latents); a faithful map destroys the prediction early;
* **insertion** — from ``x_t`` blurred with a Gaussian (11×11, σ = 5, as the authors use),
  the original pixels are put back; a faithful map restores the prediction early.

At every point the model predicts the clean sample, and its squared distance ``d_i`` to the
unperturbed prediction is turned into a similarity in [0, 1]: ``1 - d_i / d_end`` for
deletion (``d_end``: everything deleted) and ``1 - d_i / d_start`` for insertion
(``d_start``: everything blurred). The AUC is the trapezoid mean of the curve: **deletion
AUC — lower is better; insertion AUC — higher is better.** All points go through the model
in one batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..explain.run import GeneratedRun
from ..pictures import gaussian_window

__all__ = ["blur", "insertion_deletion", "trapezoid_auc"]


def blur(x: Tensor, size: int = 11, sigma: float = 5.0) -> Tensor:
    """Gaussian blur of ``(N, C, H, W)`` with reflect padding."""
    channels = x.shape[1]
    kernel = gaussian_window(size, sigma).to(x)[None, None].expand(channels, 1, -1, -1)
    pad = size // 2
    mode = "reflect" if pad < min(x.shape[-2:]) else "replicate"
    return F.conv2d(F.pad(x, (pad,) * 4, mode=mode), kernel, groups=channels)


def trapezoid_auc(curve: Tensor) -> float:
    """Area under ``curve`` sampled evenly on [0, 1] (trapezoid rule)."""
    n = curve.numel()
    if n < 2:
        raise ValueError("a curve needs at least two points")
    return float((curve.sum() - (curve[0] + curve[-1]) / 2) / (n - 1))


def _curve(pipe, run: GeneratedRun, index: int, start: Tensor, finish: Tensor, order: Tensor):
    """Similarity curve while the pixels of ``start`` become those of ``finish`` in
    ``order``; returns (distances, reference distance at the far end)."""
    process = pipe.process
    state = run.states[index]
    _, channels, height, width = start.shape
    stages = height + 1
    steps = torch.arange(stages, device=start.device) * width  # pixels changed per point
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    changed = (rank[None, :] < steps[:, None]).view(stages, 1, height, width)
    inputs = torch.where(changed, finish, start)
    t = torch.full((stages,), state.t, device=start.device, dtype=torch.long)
    with torch.no_grad():
        prediction = run.predict(pipe.unet, inputs, state.t)
        x0 = process.predicted_x0(prediction, inputs, t)
        reference = process.predicted_x0(state.prediction.to(start.device), state.x_t, t[:1])
    return (x0 - reference).square().mean(dim=(1, 2, 3))


def insertion_deletion(
    pipe, run: GeneratedRun, saliency: Tensor, step: int | None = None
) -> tuple[float, float]:
    """``(insertion AUC, deletion AUC)`` of the ``(H, W)`` ``saliency`` at step ``step``
    (default: three quarters of the way, where DF-RISE and DF-CAM look)."""
    index = run.step_index(step)
    x_t = run.states[index].x_t.to(run.x_T.device)
    # Decreasing saliency; ties keep raster order (stable sort).
    order = torch.sort(saliency.flatten().to(x_t.device), descending=True, stable=True).indices
    mean = torch.full_like(x_t, pipe.process.mean)
    deleted = _curve(pipe, run, index, x_t, mean, order)
    inserted = _curve(pipe, run, index, blur(x_t), x_t, order)
    deletion = 1 - deleted / deleted[-1].clamp(min=1e-12)
    insertion = 1 - inserted / inserted[0].clamp(min=1e-12)
    return trapezoid_auc(insertion.cpu()), trapezoid_auc(deletion.cpu())
