"""Fréchet distance between generated and real images (torchmetrics), batched and sharded.

With InceptionV3 weights (a local safetensors file) the feature extractor is InceptionV3's
2048-d pool layer and the result is FID. Without them, on shapes data, it is the project's
shapes feature extractor and the result is the *shapes Fréchet distance* (see
:mod:`bcosdiff.evaluation.features`). Real image ``i`` and its caption come from the data
source; generated image ``i`` is the model's sample for that caption with seed ``seed + i``.

Under ``accelerate launch`` / ``torchrun`` each process takes every ``world``-th index and
torchmetrics sums the feature statistics over the processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from ..data.images import ImageFolderDataset
from ..data.shapes import ShapesDataset
from ..request import batch_requests

__all__ = ["FrechetResult", "frechet_distance"]


@dataclass
class FrechetResult:
    value: float
    metric: str  # "FID" or "shapes Fréchet distance"
    count: int
    steps: int
    feature_extractor: str
    real_vs_real: float | None = None  # the same distance between two disjoint real sets

    def to_dict(self) -> dict:
        return asdict(self)


def _real_source(data: str, size: int, seed: int):
    if data == "shapes":
        dataset = ShapesDataset(size=size, seed=seed)

        def get(i: int):
            sample = dataset.sample(i)
            return torch.from_numpy(sample.image).permute(2, 0, 1), sample.caption

        return get, None
    folder = ImageFolderDataset(Path(data), size=size, flip=False)

    def get(i: int):
        item = folder[i]
        return (item["image"] * 255 + 0.5).clamp(0, 255).to(torch.uint8), item["caption"]

    return get, len(folder)


def frechet_distance(
    pipe,
    *,
    data: str = "shapes",
    count: int = 1000,
    steps: int = 25,
    seed: int = 0,
    guidance: float | None = None,
    batch: int = 32,
    inception_weights: str | Path | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    rank: int = 0,
    world: int = 1,
    reference: bool = False,
) -> FrechetResult:
    """Fréchet distance of ``count`` generated vs ``count`` real images (module docstring).

    With ``reference`` the same distance between real images ``0…count-1`` and
    ``count…2·count-1`` is computed too. It is no floor for the model: generated images share
    the captions of real images ``0…count-1``, the second real set has other captions.
    Images are sampled at ``guidance`` (default: the model's scale); process ``rank`` of
    ``world`` does every ``world``-th image."""
    if inception_weights is not None:
        from .inception import load_inception

        extractor: nn.Module = load_inception(inception_weights)
        metric, name = "FID", f"InceptionV3 ({Path(inception_weights).name})"
    elif data == "shapes":
        from .features import SHAPES_FEATURES, load_shapes_features

        extractor = load_shapes_features()
        metric, name = "shapes Fréchet distance", f"shapes CNN ({SHAPES_FEATURES.name})"
    else:
        raise ValueError(
            "FID needs InceptionV3 weights (--inception-weights FILE.safetensors); the domain "
            "feature extractor exists for shapes data only"
        )
    fid = FrechetInceptionDistance(feature=extractor, normalize=False, reset_real_features=True)
    get, available = _real_source(data, pipe.sample_size, seed)
    if available is not None:
        count = min(count, available)
    mine = list(range(rank, count, world))
    chunks = [mine[i : i + batch] for i in range(0, len(mine), batch)]
    for chunk in progress(chunks) if progress else chunks:
        real, captions = zip(*(get(i) for i in chunk), strict=True)
        fid.update(torch.stack(real), real=True)
        seeds = [seed + i for i in chunk]
        samples = pipe.sample_batch(
            batch_requests(list(captions), seeds, steps=steps, guidance=guidance)
        )
        fake = [torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in pipe.images(samples)]
        fid.update(torch.stack(fake), real=False)
    value = float(fid.compute())
    floor = None
    if reference and (available is None or available >= 2 * count):
        fid.reset()
        for chunk in chunks:
            fid.update(torch.stack([get(i)[0] for i in chunk]), real=True)
            fid.update(torch.stack([get(count + i)[0] for i in chunk]), real=False)
        floor = float(fid.compute())
    return FrechetResult(value, metric, count, steps, name, floor)
