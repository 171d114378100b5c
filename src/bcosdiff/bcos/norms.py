"""Bias-free, uncentred normalisation layers.

``y = γ · x / sqrt(Var[x] + eps)`` with the variance taken over the normalised group; the
mean is *not* subtracted and there is no additive shift, so the layer is a per-sample
scaling of its input (dynamic linear). In explanation mode the statistic is detached. This
is the "uncentred" norm of B-cos v2 with its bias removed; the optional ``γ`` is a learnable
per-channel scale, itself linear.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .mode import DetachableModule

__all__ = ["UncentredGroupNorm", "UncentredLayerNorm", "uncentred_normalise"]


def uncentred_normalise(
    x: Tensor, dims: tuple[int, ...], eps: float, detach: bool, shared: bool = False
) -> Tensor:
    """Divide ``x`` by its standard deviation over ``dims`` (mean kept in ``x``); with
    ``shared`` the statistic of batch row 0 is used for every row."""
    stats_source = x[:1] if shared else x
    stats_source = stats_source.detach() if detach else stats_source
    var = stats_source.var(dim=dims, unbiased=False, keepdim=True)
    return x * torch.rsqrt(var + eps)


class UncentredGroupNorm(DetachableModule):
    """Group norm over ``(N, C, *)`` without centring and without bias."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, scale: bool = True):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"{num_channels} channels cannot be split into {num_groups} groups")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels)) if scale else None

    def forward(self, x: Tensor) -> Tensor:
        grouped = x.unflatten(1, (self.num_groups, -1))
        dims = tuple(range(2, grouped.dim()))
        y = uncentred_normalise(
            grouped, dims, self.eps, self.detach_dynamic, self.shared_factors
        ).flatten(1, 2)
        if self.weight is not None:
            y = y * self.weight.view(1, -1, *([1] * (x.dim() - 2)))
        return y

    def extra_repr(self) -> str:
        mode = ", explanation_mode=True" if self.detach_dynamic else ""
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}{mode}"


class UncentredLayerNorm(DetachableModule):
    """Layer norm over the last dimension without centring and without bias."""

    def __init__(self, dim: int, eps: float = 1e-5, scale: bool = True):
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if scale else None

    def forward(self, x: Tensor) -> Tensor:
        y = uncentred_normalise(x, (-1,), self.eps, self.detach_dynamic, self.shared_factors)
        return y * self.weight if self.weight is not None else y

    def extra_repr(self) -> str:
        mode = ", explanation_mode=True" if self.detach_dynamic else ""
        return f"{self.dim}, eps={self.eps}{mode}"
