"""A fixed-noise validation loss that ranks models of any variant on the same footing.

Every model is asked for the clean image of the same noisy scenes: held-out scenes (a data
seed no run trains on), each noised at the same time steps with the same noise. The error
is read in pixels, on the decoded RGB image in ``[0, 1]`` (clipped, as a sampler reads it),
so B-cos x0 models and ordinary ε models are compared by what they draw, not by losses in
different coordinates. With the same scenes, steps and noise, two evaluations of one model
give the same number, and a difference between runs is a difference between the models.

:func:`error_split` reads the same error apart: the share of the noise left in the picture,
and the rest by spatial frequency.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..diffusion import decode_image, encode_image

__all__ = ["VALIDATION_SEED", "ErrorSplit", "ValidationLoss", "error_split", "validation_loss"]

VALIDATION_SEED = 90_001  # scenes no training config draws (their seeds are 0 to 3)
DEFAULT_LEVELS = (100, 300, 500, 700, 900)


@dataclass(frozen=True)
class ValidationLoss:
    """Mean squared pixel error of the predicted clean image, overall and per time step."""

    mean: float
    per_level: dict[int, float]
    scenes: int


@dataclass(frozen=True)
class ErrorSplit:
    """The pixel error at one time step, read apart (mean squares per pixel and channel).

    ``noise`` is the error of the identity predictor (the noisy picture read as clean: the
    noise as it sits in ``x_t``); ``leak`` the share of that noise left in the prediction,
    ``⟨e, n⟩ / ⟨n, n⟩`` over all scenes. The rest ``e − leak·n`` is split into its
    ``block``×``block`` block means (``low``) and what varies within a block (``high``).
    The three parts add up to ``mse``: ``leak_part + low + high``. ``detail`` is the
    within-block energy of the predicted picture over that of the true one: below 1 the
    prediction is smoother than the truth, above 1 it carries more fine structure (noise
    included)."""

    level: int
    mse: float
    noise: float
    leak: float
    leak_part: float
    low: float
    high: float
    detail: float


def _within_block(x: torch.Tensor, block: int) -> torch.Tensor:
    """``x`` minus its ``block``×``block`` block means."""
    return x - F.interpolate(F.avg_pool2d(x, block), scale_factor=block, mode="nearest")


def _scene_noise(shape: torch.Size, seed: int, scene: int, level: int) -> torch.Tensor:
    g = torch.Generator().manual_seed((seed * 1_000_003 + scene) * 1009 + level)
    return torch.randn(tuple(shape), generator=g)


@torch.no_grad()
def _predictions(
    pipe, dataset, scenes: int, levels: tuple[int, ...], seed: int, batch: int
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(t, truth, predicted picture, noisy picture)`` per batch and level, in ``[0, 1]``
    RGB; the noisy picture is ``x_t`` with its mean shift and scale undone, read as clean.

    The noise of scene ``i`` at level ``t`` depends only on ``(seed, i, t)`` and is drawn in
    image space, so a B-cos and an ordinary model see the same noisy picture."""
    process, unet, text = pipe.process, pipe.unet, pipe.text
    device = next(unet.parameters()).device
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
            root = float(process.alphas_cumprod()[t]) ** 0.5
            noisy = decode_image((x_t - (1 - root) * process.mean) / root, process.encoding)
            yield t, rgb, picture, noisy


def validation_loss(
    pipe,
    dataset,
    scenes: int = 256,
    levels: tuple[int, ...] = DEFAULT_LEVELS,
    seed: int = 0,
    batch: int = 64,
) -> ValidationLoss:
    """The pixel MSE of ``pipe``'s x̂0 on the first ``scenes`` items of ``dataset`` (images in
    ``[0, 1]`` with captions), each noised at every time step in ``levels``."""
    errors = {t: [] for t in levels}
    for t, rgb, picture, _ in _predictions(pipe, dataset, scenes, levels, seed, batch):
        errors[t].append((picture - rgb).square().flatten(1).mean(dim=1))
    per_level = {t: float(torch.cat(e).mean()) for t, e in errors.items()}
    mean = float(torch.stack([torch.cat(e) for e in errors.values()]).mean())
    return ValidationLoss(mean, per_level, scenes)


def error_split(
    pipe,
    dataset,
    scenes: int = 256,
    levels: tuple[int, ...] = DEFAULT_LEVELS,
    seed: int = 0,
    batch: int = 64,
    block: int = 4,
) -> list[ErrorSplit]:
    """:class:`ErrorSplit` per level for the scenes and noise of :func:`validation_loss`
    (the same ``mse``)."""
    size = dataset[0]["image"].shape[-2:]
    if size[0] % block or size[1] % block:
        raise ValueError(f"block {block} does not divide the {size[0]}x{size[1]} images")
    parts = {t: [] for t in levels}
    for t, rgb, picture, noisy in _predictions(pipe, dataset, scenes, levels, seed, batch):
        parts[t].append((rgb, picture, noisy))
    splits = []
    for t, triples in parts.items():
        truth, picture, noisy = (
            torch.cat(column).double() for column in zip(*triples, strict=True)
        )
        error, noise = picture - truth, noisy - truth
        leak = float((error * noise).sum() / noise.square().sum().clamp_min(1e-30))
        rest = error - leak * noise
        high = _within_block(rest, block)
        detail = _within_block(picture, block).square().sum()
        detail = float(detail / _within_block(truth, block).square().sum().clamp_min(1e-30))
        splits.append(
            ErrorSplit(
                level=t,
                mse=float(error.square().mean()),
                noise=float(noise.square().mean()),
                leak=leak,
                leak_part=leak**2 * float(noise.square().mean()),
                low=float((rest - high).square().mean()),
                high=float(high.square().mean()),
                detail=detail,
            )
        )
    return splits
