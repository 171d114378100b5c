"""A fixed-noise validation loss that ranks models of any variant on the same footing.

Every model is asked for the clean image of the same noisy scenes: held-out scenes (a data
seed no run trains on), each noised at the same time steps with the same noise. The error
is read in pixels, on the decoded RGB image in ``[0, 1]`` (clipped, as a sampler reads it),
so B-cos x0 models and ordinary ε models are compared by what they draw, not by losses in
different coordinates. With the same scenes, steps and noise, two evaluations of one model
give the same number, and a difference between runs is a difference between the models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..diffusion import decode_image, encode_image

__all__ = ["VALIDATION_SEED", "ValidationLoss", "validation_loss"]

VALIDATION_SEED = 90_001  # scenes no training config draws (their seeds are 0 to 3)
DEFAULT_LEVELS = (100, 300, 500, 700, 900)


@dataclass(frozen=True)
class ValidationLoss:
    """Mean squared pixel error of the predicted clean image, overall and per time step."""

    mean: float
    per_level: dict[int, float]
    scenes: int


def _scene_noise(shape: torch.Size, seed: int, scene: int, level: int) -> torch.Tensor:
    g = torch.Generator().manual_seed((seed * 1_000_003 + scene) * 1009 + level)
    return torch.randn(tuple(shape), generator=g)


@torch.no_grad()
def validation_loss(
    pipe,
    dataset,
    scenes: int = 256,
    levels: tuple[int, ...] = DEFAULT_LEVELS,
    seed: int = 0,
    batch: int = 64,
) -> ValidationLoss:
    """The pixel MSE of ``pipe``'s x̂0 on the first ``scenes`` items of ``dataset`` (images in
    ``[0, 1]`` with captions), each noised at every time step in ``levels``.

    The noise of scene ``i`` at level ``t`` depends only on ``(seed, i, t)`` and is drawn in
    image space, so a B-cos and an ordinary model see the same noisy picture."""
    process, unet, text = pipe.process, pipe.unet, pipe.text
    device = next(unet.parameters()).device
    errors = {t: [] for t in levels}
    for start in range(0, scenes, batch):
        items = [dataset[i] for i in range(start, min(scenes, start + batch))]
        rgb = torch.stack([item["image"] for item in items]).to(device)
        cond = text([item["caption"] for item in items])
        x0 = encode_image(rgb, process.encoding)
        for t in levels:
            eps = torch.stack(
                [_scene_noise(rgb.shape[1:], seed, start + i, t) for i in range(len(items))]
            ).to(device)
            # The same image-space noise in either encoding (rgb_inv ties its halves).
            eps = torch.cat([eps, -eps], dim=1) if process.channels == 6 else eps
            steps = torch.full((rgb.shape[0],), t, dtype=torch.long, device=device)
            x_t = process.q_sample(x0, steps, eps)
            prediction = unet(x_t, steps, cond.embeddings, cond.mask)
            picture = decode_image(process.predicted_x0(prediction, x_t, steps), process.encoding)
            errors[t].append((picture - rgb).square().flatten(1).mean(dim=1))
    per_level = {t: float(torch.cat(e).mean()) for t, e in errors.items()}
    mean = float(torch.stack([torch.cat(e) for e in errors.values()]).mean())
    return ValidationLoss(mean, per_level, scenes)
