"""Reconstruction and sparsity metrics shared by every dictionary (SAE, ITDA, raw neurons).

* **FVU** (fraction of variance unexplained) ``Σ‖x - x̂‖² / Σ‖x - x̄‖²`` over all rows, with
  ``x̄`` the rows' mean: 0 is perfect, 1 is no better than predicting the mean;
* **L0**: mean number of non-zero codes per row;
* **dead share**: the share of features that are non-zero on no row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

__all__ = ["DictionaryMetrics", "dictionary_metrics"]


@dataclass
class DictionaryMetrics:
    fvu: float
    l0: float
    dead_share: float
    features: int
    rows: int

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def dictionary_metrics(
    encode: Callable[[Tensor], Tensor],
    decode: Callable[[Tensor], Tensor],
    batches: Iterable[Tensor],
) -> DictionaryMetrics:
    """The metrics of ``decode(encode(x))`` over ``batches`` ``(N, dim)`` (two passes
    would be needed for the mean; the variance is accumulated from sums instead)."""
    error = total = sq = 0.0
    rows = 0
    active = None
    nonzeros = 0
    sums = None
    for x in batches:
        x = x.float()
        codes = encode(x)
        recon = decode(codes)
        error += float((x - recon).double().square().sum())
        sq += float(x.double().square().sum())
        sums = x.double().sum(0) if sums is None else sums + x.double().sum(0)
        fired = (codes != 0).any(0)
        active = fired if active is None else active | fired
        nonzeros += int((codes != 0).sum())
        rows += x.shape[0]
    if rows == 0 or active is None or sums is None:
        raise ValueError("no rows to measure")
    total = sq - float(sums.square().sum()) / rows  # Σ‖x - x̄‖²
    return DictionaryMetrics(
        fvu=error / total if total > 0 else float("nan"),
        l0=nonzeros / rows,
        dead_share=float((~active).float().mean()),
        features=int(active.numel()),
        rows=rows,
    )
