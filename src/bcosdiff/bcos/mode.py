"""Explanation mode: the switch that turns a B-cos network into an exact dynamic linear map.

In explanation mode every data-dependent factor of the forward pass (the B-cos scale
``|cos(x, w)|^(B-1)``, the statistics of norm layers, attention weights, the gates of gated
non-linearities) is detached from the autograd graph. The network still computes the same
numbers, but autograd then sees ``y = W(x) x`` with ``W(x)`` held fixed, so gradients (and
Jacobian-vector products) give ``W(x)`` itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn

__all__ = [
    "DetachableModule",
    "explanation_mode",
    "is_explanation_mode",
    "linear_replay",
    "set_explanation_mode",
]


class DetachableModule(nn.Module):
    """A module with data-dependent factors that are detached in explanation mode."""

    def __init__(self) -> None:
        super().__init__()
        self.detach_dynamic = False
        # Linear replay: dynamic factors come from batch row 0 and are shared by all rows.
        self.shared_factors = False

    def factor_source(self, t: Tensor) -> Tensor:
        """The tensor dynamic factors are computed from: ``t``, or its row 0 in a replay."""
        return t[:1] if self.shared_factors else t

    def extra_repr(self) -> str:
        return "explanation_mode=True" if self.detach_dynamic else ""


def _detachables(model: nn.Module) -> list[DetachableModule]:
    return [m for m in model.modules() if isinstance(m, DetachableModule)]


def set_explanation_mode(model: nn.Module, active: bool = True) -> None:
    """Switch every detachable module of ``model`` on or off (no restore; prefer the context)."""
    for module in _detachables(model):
        module.detach_dynamic = bool(active)


def is_explanation_mode(model: nn.Module) -> bool:
    """True when every detachable module of ``model`` is in explanation mode."""
    modules = _detachables(model)
    return bool(modules) and all(m.detach_dynamic for m in modules)


@contextmanager
def explanation_mode(model: nn.Module, active: bool = True) -> Iterator[nn.Module]:
    """Context manager: ``with explanation_mode(unet): ...``.

    Each module's previous state is recorded and restored on exit, also when the body
    raises, so nesting and partially switched models come back exactly as they were.
    """
    modules = _detachables(model)
    previous = [m.detach_dynamic for m in modules]
    try:
        for module in modules:
            module.detach_dynamic = bool(active)
        yield model
    finally:
        for module, state in zip(modules, previous, strict=True):
            module.detach_dynamic = state


@contextmanager
def linear_replay(model: nn.Module) -> Iterator[nn.Module]:
    """Explanation mode in which every dynamic factor is computed from batch row 0 only.

    Row 0 carries the real input; the other rows then go through exactly the linear map
    ``W(x₀)`` of row 0. Feeding tangents (e.g. one prompt token each) as the other rows gives
    their contributions in one ordinary batched forward pass. Restores the previous state.
    """
    modules = _detachables(model)
    previous = [(m.detach_dynamic, m.shared_factors) for m in modules]
    try:
        for module in modules:
            module.detach_dynamic = True
            module.shared_factors = True
        yield model
    finally:
        for module, (detach, shared) in zip(modules, previous, strict=True):
            module.detach_dynamic = detach
            module.shared_factors = shared
