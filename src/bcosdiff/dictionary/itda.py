"""Inference-Time Decomposition of Activations (ITDA).

The dictionary is a set of the data's own activations, each normalised to unit length. A
row ``x`` is encoded by gradient pursuit to a target number of atoms ``l0``; each iteration

    add j = argmax_j ⟨d_j, r⟩ to the support (while it holds fewer than l0 atoms)
    g = support ⊙ (D r),   c = Dᵀ g,   η = ⟨c, r⟩ / max(⟨c, c⟩, ε)
    w ← ReLU(w + η g),     r = x - Dᵀ w

and the ``l0`` largest weights are kept. The reference code floors ``⟨c, c⟩`` at ε = 1e-3,
which stalls the pursuit once the gradient is that small (activations of small norm, or
refinement iterations); the floor here is 1e-12, a guard against division by zero only.

:meth:`ITDA.fit` grows the dictionary: every row whose normalised reconstruction loss
``‖x - x̂‖² / ‖x‖²`` exceeds ``threshold`` (τ) becomes a new atom.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ITDA", "gradient_pursuit"]


def gradient_pursuit(x: Tensor, atoms: Tensor, l0: int, iterations: int | None = None) -> Tensor:
    """Non-negative weights ``(N, M)`` over the unit-norm ``atoms`` ``(M, dim)`` with at most
    ``l0`` non-zeros per row of ``x`` ``(N, dim)``; ``iterations`` defaults to ``l0`` (more
    iterations refine the weights on the support)."""
    rows, count = x.shape[0], atoms.shape[0]
    weights = x.new_zeros(rows, count)
    if count == 0:
        return weights
    l0 = min(l0, count)
    support = torch.zeros(rows, count, dtype=torch.bool, device=x.device)
    residual = x
    for _ in range(l0 if iterations is None else iterations):
        scores = residual @ atoms.T  # (N, M): ⟨d_j, r⟩
        growing = support.sum(1) < l0
        best = scores.masked_fill(support, float("-inf")).argmax(1)
        support[growing.nonzero()[:, 0], best[growing]] = True
        g = scores * support
        c = g @ atoms
        eta = (c * residual).sum(1, keepdim=True) / (c * c).sum(1, keepdim=True).clamp(min=1e-12)
        weights = F.relu(weights + eta * g)
        residual = x - weights @ atoms
    top = weights.topk(l0, dim=1)
    return torch.zeros_like(weights).scatter(1, top.indices, top.values)


class ITDA:
    """``ITDA(dim, l0, threshold)``; :meth:`fit` on batches, then :meth:`encode` /
    :meth:`decode` like the SAE."""

    def __init__(self, dim: int, l0: int, threshold: float = 0.3, max_atoms: int = 65_536):
        if l0 < 1:
            raise ValueError("l0 must be at least 1")
        if not 0 < threshold < 1:
            raise ValueError("threshold must be in (0, 1)")
        self.dim, self.l0, self.threshold, self.max_atoms = dim, l0, threshold, max_atoms
        self.atoms = torch.zeros(0, dim)
        self.sources: list[int] = []  # for every atom, the index of the row it came from

    @property
    def features(self) -> int:
        return self.atoms.shape[0]

    def encode(self, x: Tensor, iterations: int | None = None) -> Tensor:
        return gradient_pursuit(x, self.atoms.to(x), self.l0, iterations)

    def decode(self, weights: Tensor) -> Tensor:
        return weights @ self.atoms.to(weights)

    def direction(self, feature: int) -> Tensor:
        return self.atoms[feature]

    def normalised_loss(self, x: Tensor) -> Tensor:
        recon = self.decode(self.encode(x))
        return (x - recon).square().sum(1) / x.square().sum(1).clamp(min=1e-12)

    def fit(self, batches: Iterable[Tensor], first_row: int = 0) -> int:
        """Grow the dictionary over ``batches``; returns the number of atoms added. Rows are
        numbered from ``first_row`` in order (``sources`` records where atoms came from)."""
        added = 0
        row = first_row
        for batch in batches:
            batch = batch.float()
            loss = self.normalised_loss(batch)
            for i in torch.nonzero(loss > self.threshold)[:, 0].tolist():
                if self.features >= self.max_atoms:
                    return added
                candidate = batch[i : i + 1]
                # Re-check against atoms added from earlier rows of this batch.
                if added and float(self.normalised_loss(candidate)[0]) <= self.threshold:
                    continue
                atom = F.normalize(candidate, dim=1)
                if float(atom.norm()) == 0:
                    continue
                self.atoms = torch.cat([self.atoms, atom.cpu()])
                self.sources.append(row + i)
                added += 1
            row += batch.shape[0]
        return added
