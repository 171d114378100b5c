"""Automatic interpretation of dictionary features on shapes, scored against ground truth.

On the procedural shapes data every pixel's meaning is known: which object covers it, and
that object's colour, shape, size and (when captioned) position word; the rest is
background. Two scores per (feature, attribute), over every position of every image:

* **precision**: the share of the feature's (positive) activation mass that lies in the
  attribute's mask, and its *gain* over chance, ``(precision - base) / (1 - base)`` with
  ``base`` the share of positions in the mask (1 = every bit of activation on the attribute,
  0 = no better than spread at random). A sparse feature that fires only on red objects
  scores 1 even when it fires on few of them.
* **AUROC** of the activation as a detector of "this position is in the mask" (1 = perfect,
  0.5 = chance). It also asks for recall, so a feature that fires on a small part of the
  attribute's positions stays near 0.5.

A feature is *interpreted* as the attribute with the highest precision gain.

Activations come from dataset images, not generated ones, so the masks are exact: each image
is noised to a few time steps (``q_sample``), the U-Net runs with the image's caption, and
the site's update at every position is a row; the attribute masks are area-downsampled to
the site's resolution (covered ≥ 0.5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.shapes import COLOURS, POSITIONS, SHAPES, SIZES, ShapesDataset
from ..diffusion import encode_image
from .capture import record_updates

__all__ = [
    "ATTRIBUTES",
    "FeatureReading",
    "attribute_masks",
    "average_ranks",
    "dataset_activations",
    "feature_auroc",
    "feature_precision",
    "interpret_features",
]

ATTRIBUTES: list[str] = [
    *[f"colour:{c}" for c in COLOURS],
    *[f"shape:{s}" for s in SHAPES],
    *[f"size:{s}" for s in SIZES],
    *[f"position:{p}" for p in POSITIONS],
    "background",
]


def attribute_masks(sample, side: int) -> Tensor:
    """``(len(ATTRIBUTES), side, side)`` bool masks of one :class:`ShapeSample`."""
    size = sample.masks.shape[-1]
    full = torch.zeros(len(ATTRIBUTES), size, size)
    for obj, mask in zip(sample.objects, sample.masks, strict=True):
        m = torch.from_numpy(np.asarray(mask, dtype=np.float32))
        for name in (f"colour:{obj.colour}", f"shape:{obj.shape}", f"size:{obj.size}"):
            full[ATTRIBUTES.index(name)] = torch.maximum(full[ATTRIBUTES.index(name)], m)
        if obj.position is not None:
            k = ATTRIBUTES.index(f"position:{obj.position}")
            full[k] = torch.maximum(full[k], m)
    covered = full[:-1].amax(0)
    full[-1] = 1 - covered
    pooled = F.adaptive_avg_pool2d(full[None], side)[0]
    return pooled >= 0.5


@torch.no_grad()
def dataset_activations(
    pipe,
    site: str,
    images: int,
    timesteps: Sequence[int] = (250, 500, 750),
    seed: int = 123,
    batch: int = 32,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(activations (rows, C), masks (rows, A) bool, image index (rows,))`` at ``site`` for
    ``images`` held-out dataset images (data seed ``seed``), each noised to every time step
    of ``timesteps``; one row per (image, time step, position)."""
    dataset = ShapesDataset(size=pipe.sample_size, seed=seed, two_object_prob=0.5)
    process = pipe.process
    g = torch.Generator().manual_seed(seed)
    rows, labels, owners = [], [], []
    for first in range(0, images, batch):
        samples = [dataset.sample(i) for i in range(first, min(images, first + batch))]
        pixels = torch.stack(
            [torch.from_numpy(s.image).permute(2, 0, 1).float() / 255 for s in samples]
        )
        x0 = encode_image(pixels, process.encoding).to(pipe.device)
        cond = pipe.encode([s.caption for s in samples])
        context, mask = cond.embeddings.to(pipe.device), cond.mask.to(pipe.device)
        for t in timesteps:
            time = torch.full((len(samples),), t, dtype=torch.long, device=pipe.device)
            noise = process.noise(tuple(x0.shape), g).to(pipe.device)
            x_t = process.q_sample(x0, time, noise)
            with record_updates(pipe.unet, [site]) as records:
                pipe.unet(x_t, time, context, mask)
            update = records[site][0]  # (N, P, C)
            side = int(round(update.shape[1] ** 0.5))
            rows.append(update.flatten(0, 1))
            masks = torch.stack([attribute_masks(s, side) for s in samples])  # (N, A, s, s)
            labels.append(masks.flatten(2).transpose(1, 2).flatten(0, 1))
            owners.append(torch.arange(first, first + len(samples)).repeat_interleave(side * side))
    return torch.cat(rows), torch.cat(labels), torch.cat(owners)


def average_ranks(values: Tensor) -> Tensor:
    """1-based ranks of a 1-D tensor, ties given their average rank."""
    ordered, order = values.sort()
    _, inverse, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    averages = ends - (counts.double() - 1) / 2
    ranks = torch.empty(values.shape[0], dtype=torch.float64)
    ranks[order] = averages[inverse]
    return ranks


def feature_precision(codes: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """``(precision (F, A), gain (F, A))`` of the positive activation mass of ``codes``
    ``(N, F)`` in ``masks`` ``(N, A)``; NaN for features with no positive activation."""
    positive = codes.double().clamp(min=0)
    inside = positive.T @ masks.double()  # (F, A)
    total = positive.sum(0)[:, None]
    precision = inside / total
    precision[total[:, 0] == 0] = float("nan")
    base = masks.double().mean(0)[None]
    gain = (precision - base) / (1 - base).clamp(min=1e-12)
    return precision, gain


def feature_auroc(codes: Tensor, masks: Tensor) -> Tensor:
    """``(F, A)`` AUROC of each feature's activation (``codes`` ``(N, F)``) as a detector of
    each attribute (``masks`` ``(N, A)`` bool), by the rank-sum statistic with tied values
    at their average rank (NaN where an attribute has no positive or no negative row)."""
    positives = masks.double()
    n_pos = positives.sum(0)
    n_neg = masks.shape[0] - n_pos
    result = torch.empty(codes.shape[1], masks.shape[1], dtype=torch.float64)
    for f in range(codes.shape[1]):
        ranks = average_ranks(codes[:, f].double().cpu())
        rank_sum = ranks @ positives
        result[f] = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    result[:, (n_pos == 0) | (n_neg == 0)] = float("nan")
    return result


@dataclass
class FeatureReading:
    feature: int
    attribute: str  # the attribute the feature tracks best (highest precision gain)
    precision: float  # share of its positive activation mass inside the attribute's mask
    gain: float  # (precision - base) / (1 - base)
    auroc: float  # of the same attribute
    frequency: float  # share of rows on which the feature is non-zero


def interpret_features(
    encode: Callable[[Tensor], Tensor],
    activations: Tensor,
    masks: Tensor,
    batch: int = 8192,
    min_rows: int = 100,
) -> list[FeatureReading]:
    """The best attribute and its scores for every feature with positive activation on at
    least ``min_rows`` rows (a feature seen on a handful of positions would score perfect
    precision by chance; rarer features are left out and counted by the caller)."""
    codes = torch.cat([encode(x) for x in activations.split(batch)]).detach()
    fires = (codes > 0).float().mean(0)
    alive = torch.nonzero((codes > 0).sum(0) >= min_rows)[:, 0]
    precision, gain = feature_precision(codes[:, alive], masks)
    auroc = feature_auroc(codes[:, alive], masks)
    readings = []
    for row, feature in enumerate(alive.tolist()):
        best = int(torch.nan_to_num(gain[row], nan=-2.0).argmax())
        readings.append(
            FeatureReading(
                feature,
                ATTRIBUTES[best],
                float(precision[row, best]),
                float(gain[row, best]),
                float(auroc[row, best]),
                float(fires[feature]),
            )
        )
    return readings
