"""Gated non-linearities that are dynamic linear: ``value · φ(gate)``.

SiLU is written as ``x · sigmoid(x)`` and GEGLU as ``a · gelu(g)`` with ``(a, g)`` two halves of
a projection. In explanation mode the gate ``φ(·)`` is detached, so only the value path
carries the linear contribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mode import DetachableModule

__all__ = ["GEGLU", "GatedSiLU"]


def _gated(value: Tensor, gate: Tensor, detach: bool) -> Tensor:
    return value * (gate.detach() if detach else gate)


class GatedSiLU(DetachableModule):
    """``x · sigmoid(x)`` with the sigmoid detached in explanation mode."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.detach_dynamic:
            return F.silu(x)  # same numbers, one fused kernel
        return _gated(x, self.factor_source(x).sigmoid(), True)


class GEGLU(DetachableModule):
    """``a · gelu(g)`` with ``[a, g] = proj(x)``; the GELU gate detached in explanation mode.

    ``proj`` is any linear layer mapping to ``2 · dim_out`` features (B-cos or ordinary).
    """

    def __init__(self, proj: nn.Module):
        super().__init__()
        self.proj = proj

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        if not torch.is_grad_enabled():  # the same numbers, one allocation less
            if not self.detach_dynamic:  # sampling
                return F.gelu(gate).mul_(value)
            if self.shared_factors:  # linear replay: ``value`` is part of a fresh tensor
                return value.mul_(F.gelu(self.factor_source(gate)))
        return _gated(value, F.gelu(self.factor_source(gate)), self.detach_dynamic)
