"""Which share of the work this process does when several are launched together."""

from __future__ import annotations

import os

__all__ = ["process_shard"]


def process_shard() -> tuple[int, int]:
    """``(rank, world)`` of this process: ``(0, 1)`` when launched alone; under
    ``accelerate launch`` or ``torchrun`` (``WORLD_SIZE`` > 1) the process index from
    Accelerate, which also sets up the process group (gloo on CPUs, as in training)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available()).process_index, world
