"""Steering: add a feature's direction to the output of a U-Net site on every step.

``Steering(site, vector)`` adds ``vector`` (``(C,)``, at every spatial position) to the
output of the spatial-transformer block ``site`` in every U-Net call of a run. The vector is
``strength · (mean row norm of the site's updates) · unit direction`` of a dictionary feature
(:func:`steering_vector`). ``strength = 0`` adds nothing: the image is the unsteered one,
bit for bit.

For the explanation the vector is a constant, like μ: one more source of the run. In the
linear replay it enters the real run's row (and the row that carries it alone as a source),
never the replayed token rows, so the sources still add up to the sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .capture import sites

__all__ = ["Steering", "apply_steering", "steering_vector"]


@dataclass
class Steering:
    site: str  # a spatial-transformer block (bcosdiff.dictionary.sites)
    vector: Tensor  # (C,) added at every position of the block's output

    def __post_init__(self) -> None:
        if self.vector.dim() != 1:
            raise ValueError("a steering vector is one channel vector (C,)")

    @property
    def is_zero(self) -> bool:
        return not bool(self.vector.any())


def steering_vector(direction: Tensor, strength: float, scale: float) -> Tensor:
    """``strength · scale · direction / ‖direction‖``; ``scale`` is the site's mean update
    norm, so strengths are comparable across sites and models."""
    unit = direction / direction.norm().clamp(min=1e-12)
    return unit * (strength * scale)


def check_steering(unet: nn.Module, steering: Steering) -> nn.Module:
    """The module at ``steering.site``; a ValueError names a site the U-Net lacks or a
    vector of the wrong width."""
    known = sites(unet)
    if steering.site not in known:
        raise ValueError(f"unknown site {steering.site!r}; the U-Net has {list(known)}")
    module = known[steering.site]
    if steering.vector.shape[0] != module.proj_out.out_features:
        raise ValueError(
            f"site {steering.site} has {module.proj_out.out_features} channels, the "
            f"steering vector {steering.vector.shape[0]}"
        )
    return module


@contextmanager
def apply_steering(
    unet: nn.Module, steering: Steering | None, rows: Tensor | None = None
) -> Iterator[None]:
    """Within the block, ``steering.vector`` is added to the output of ``steering.site`` in
    the batch rows selected by the boolean ``rows`` (``(N,)``; None: every row). A None or
    all-zero steering changes nothing."""
    if steering is None or steering.is_zero:
        yield
        return
    module = check_steering(unet, steering)

    def add(_module: nn.Module, _inputs: tuple, output: Tensor) -> Tensor:
        vector = steering.vector.to(output)[None, :, None, None]
        if rows is None:
            return output + vector
        selected = rows.to(output.device)[:, None, None, None]
        if selected.shape[0] != output.shape[0]:
            # The replay runs the guided branches as separate calls: rows index each call.
            raise ValueError("the steering rows do not match the batch")
        return output + torch.where(selected, vector, torch.zeros_like(vector))

    handle = module.register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()
