"""Will an explanation fit in memory? An estimate made before any work starts.

The linear replay pushes ``2 + tokens (+ sources)`` rows through the U-Net at once and keeps
no graph, so its peak is about one U-Net forward pass at that batch size, whatever the number
of steps; under guidance the two branches run one after the other. Gradient × input holds a
forward-mode pass over a chunk of 16 tokens (primal and tangent), one step's activations for
the reverse pass, and every step's recomputation inputs (so it grows with the steps).

The activation size of one row is measured once per layout, by a forward pass on the meta
device (shapes only, no memory). The estimate is compared with measured peaks in
``docs/reliability.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from ..errors import BcosdiffError
from ..networks import UNet, UNetConfig

__all__ = ["RowFootprint", "available_bytes", "check_explanation_memory", "row_footprint"]

SAFETY = 2.0  # the estimate is doubled: allocator slack and temporaries beside the outputs


@dataclass(frozen=True)
class RowFootprint:
    """Activation bytes of one row in one U-Net forward pass."""

    live: int  # held at the peak of a pass without a graph: the skips plus a few outputs
    total: int  # every leaf module's output: what a pass with a graph holds


@lru_cache(maxsize=16)
def _footprint(config: UNetConfig, tokens: int) -> RowFootprint:
    with torch.device("meta"):
        unet = UNet(config)
    outputs: list[int] = []
    skips = 0

    def leaf(_module: nn.Module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            outputs.append(output.numel() * output.element_size())

    def skip(_module: nn.Module, _inputs, output) -> None:
        nonlocal skips
        skips += output.numel() * output.element_size()

    handles = [m.register_forward_hook(leaf) for m in unet.modules() if not list(m.children())]
    handles += [m.register_forward_hook(skip) for m in (unet.conv_in, *unet.down)]
    size = config.sample_size
    with torch.no_grad(), torch.device("meta"):
        unet(
            torch.zeros(1, config.in_channels, size, size),
            torch.zeros(1, dtype=torch.long),
            torch.zeros(1, tokens, config.context_dim),
        )
    for handle in handles:
        handle.remove()
    return RowFootprint(live=skips + 4 * max(outputs), total=sum(outputs))


def row_footprint(unet: UNet, tokens: int) -> RowFootprint:
    """The activation footprint of one row (measured once per layout, on the meta device)."""
    return _footprint(unet.config, tokens)


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (None when it cannot be told)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_explanation_memory(
    unet: UNet, tokens: int, steps: int, method: str, sources: bool = False
) -> int:
    """The estimated peak (bytes) of explaining one run; raises a :class:`BcosdiffError`
    that says what to lower when it exceeds the free memory of the model's device."""
    row = row_footprint(unet, tokens)
    if method == "gradxinput":
        # A JVP over 16 tokens (primal + tangent), one step's graph for the reverse pass,
        # and the inputs every step keeps for its recomputation.
        need = 2 * min(tokens, 16) * row.live + row.total + 2 * steps * row.live
    else:
        need = (2 + tokens + (4 if sources else 0)) * row.live
    need = int(need * SAFETY)
    device = next(unet.parameters()).device
    free = available_bytes(device)
    if free is not None and need > 0.8 * free:
        gib = 2**30
        raise BcosdiffError(
            f"explaining this run needs about {need / gib:.1f} GiB but {free / gib:.1f} GiB "
            f"are free on {device}: use a shorter prompt ({tokens} tokens), fewer steps ({steps}) "
            f"or a model with smaller images ({unet.config.sample_size}x"
            f"{unet.config.sample_size})"
        )
    return need
