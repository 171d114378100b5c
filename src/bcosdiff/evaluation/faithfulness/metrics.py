"""The measures of the faithfulness benchmark, as pure functions of maps, masks and scores."""

from __future__ import annotations

import statistics

import numpy as np
import torch
from torchmetrics.functional import spearman_corrcoef
from torchmetrics.functional.classification import binary_auroc

__all__ = ["auroc", "dilate", "localisation", "mean", "spearman", "specificity"]


def dilate(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one pixel (4-neighbours)."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def localisation(heatmap: np.ndarray, mask: np.ndarray) -> tuple[float | None, bool]:
    """``(share of the map's positive mass inside mask, whether the map's maximum falls in the
    mask dilated by one pixel)`` (the pointing game). The share is None without positive mass.
    """
    positive = np.clip(heatmap, 0, None)
    total = positive.sum()
    mass = float(positive[mask].sum() / total) if total > 0 else None
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return mass, bool(dilate(mask)[y, x])


def specificity(heatmap: np.ndarray, own: np.ndarray, other: np.ndarray) -> float | None:
    """Share of the map's positive mass on ``own`` out of its mass on ``own`` and ``other``
    (0.5: the map does not tell them apart; None without positive mass on either)."""
    positive = np.clip(heatmap, 0, None)
    mine, theirs = float(positive[own].sum()), float(positive[other].sum())
    return mine / (mine + theirs) if mine + theirs > 0 else None


def mean(values) -> float | None:
    values = list(values)
    return float(statistics.mean(values)) if values else None


def auroc(scores: list[float], positive: list[bool], higher: bool = False) -> float | None:
    """AUROC of ``scores`` for picking out the ``positive`` cases; by default a *low* score
    means positive (a low peer ratio means a missed object). ``inf`` counts as the largest
    score. None unless both kinds of case occur."""
    if len(set(positive)) < 2:
        return None
    finite = [s if np.isfinite(s) else 1e9 for s in scores]
    preds = torch.tensor(finite if higher else [-s for s in finite], dtype=torch.float64)
    return float(binary_auroc(preds, torch.tensor(positive, dtype=torch.long)))


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's ρ; None for fewer than three pairs or a constant side."""
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    x = torch.tensor(xs, dtype=torch.float64)
    y = torch.tensor(ys, dtype=torch.float64)
    return float(spearman_corrcoef(x, y))
