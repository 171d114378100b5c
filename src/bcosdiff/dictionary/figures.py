"""Feature cards a person reads: where a feature fires on its top-activating images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.shapes import ShapesDataset
from .interpret import FeatureReading

__all__ = ["feature_card", "top_features"]


def _maps(codes: Tensor, owners: Tensor, image: int, side: int) -> Tensor:
    """The feature's mean map over the time steps of one image: ``(side, side)``."""
    rows = codes[owners == image]
    return rows.view(-1, side * side).mean(0).view(side, side)


def feature_card(
    path: str | Path,
    codes: Tensor,
    owners: Tensor,
    dataset: ShapesDataset,
    reading: FeatureReading,
    side: int,
    top: int = 6,
) -> list[int]:
    """Write a PNG of feature ``reading.feature``: its ``top`` most-activating images (by the
    image's largest activation), each beside its activation map upsampled to the image;
    ``codes`` ``(rows, 1)`` are the feature's codes on the rows of
    :func:`~.interpret.dataset_activations` (``side × side`` positions per time step).
    Returns the images shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = codes[:, 0]
    images = int(owners.max()) + 1
    peak = torch.full((images,), -float("inf"))
    peak.scatter_reduce_(0, owners, column, reduce="amax")
    chosen = [int(i) for i in peak.argsort(descending=True)[:top]]
    scale = float(column.max()) or 1.0
    fig, axes = plt.subplots(2, len(chosen), figsize=(1.6 * len(chosen), 3.4), squeeze=False)
    for col, image in enumerate(chosen):
        sample = dataset.sample(image)
        size = sample.image.shape[0]
        heat = _maps(column[:, None], owners, image, side)
        up = F.interpolate(heat[None, None], size=(size, size), mode="nearest")[0, 0]
        axes[0, col].imshow(sample.image)
        axes[1, col].imshow(sample.image)
        axes[1, col].imshow(up.numpy(), cmap="inferno", alpha=0.7, vmin=0, vmax=scale)
        axes[0, col].set_title(_short(sample.caption), fontsize=6)
        for row in (0, 1):
            axes[row, col].axis("off")
    fig.suptitle(
        f"feature {reading.feature}: {reading.attribute} ({reading.precision:.0%} of its "
        f"activation, gain {reading.gain:.2f}, AUROC {reading.auroc:.2f}; fires on "
        f"{reading.frequency:.1%} of positions)",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return chosen


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def top_features(readings: Sequence[FeatureReading], count: int) -> list[FeatureReading]:
    """The ``count`` best-interpreted features (highest precision gain)."""
    return sorted(readings, key=lambda r: -r.gain)[:count]
