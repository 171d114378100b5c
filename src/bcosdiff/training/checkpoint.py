"""Training checkpoints: safetensors tensors + JSON state, written atomically, keep-last-N.

A checkpoint is a directory ``step-XXXXXXXX`` holding ``model.safetensors``,
``ema.safetensors``, ``optimizer.safetensors`` and ``state.json``. It is assembled in a hidden
temporary directory and renamed into place only when every file is written and synced, so a
crash (even SIGKILL) leaves either the previous set of checkpoints or the new complete one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import BcosdiffError

__all__ = [
    "complete_checkpoints",
    "latest_checkpoint",
    "load_checkpoint",
    "optimizer_from_tensors",
    "optimizer_to_tensors",
    "remove_partial",
    "save_checkpoint",
]

PREFIX = "step-"


def optimizer_to_tensors(state_dict: dict) -> tuple[dict[str, torch.Tensor], list]:
    tensors = {}
    for index, slots in state_dict["state"].items():
        for key, value in slots.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
    return tensors, state_dict["param_groups"]


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], param_groups: list) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": param_groups}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    root: Path,
    step: int,
    parts: dict[str, dict[str, torch.Tensor]],
    state: dict,
    keep_last: int,
    keep_every: int = 0,
) -> Path:
    """Write ``step``'s checkpoint atomically, then delete all but the last ``keep_last``
    complete checkpoints; with ``keep_every`` > 0, checkpoints at multiples of it are kept
    as well (milestones for a learning curve)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, tensors in parts.items():
        path = tmp / f"{name}.safetensors"
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))
    (tmp / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    for path in tmp.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old_step, old in complete_checkpoints(root)[:-keep_last]:
        if keep_every > 0 and old_step % keep_every == 0:
            continue
        # Rename first (atomic), so a kill during the deletion never leaves a visible,
        # half-deleted checkpoint; leftovers are removed by remove_partial().
        doomed = root / f".{old.name}.tmp-deleting"
        os.replace(old, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    return final


def remove_partial(root: Path) -> list[Path]:
    """Delete temporary directories a killed run left behind; return what was removed."""
    removed = [p for p in Path(root).glob(f".{PREFIX}*.tmp-*") if p.is_dir()]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """``(step, directory)`` of every complete checkpoint under ``root``, oldest first
    (one being written or deleted has no ``state.json`` under its final name)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.glob(f"{PREFIX}*") if p.is_dir() and (p / "state.json").exists()]
    return sorted((int(p.name[len(PREFIX) :]), p) for p in found)


def latest_checkpoint(root: Path) -> Path | None:
    found = complete_checkpoints(root)
    return found[-1][1] if found else None


def load_checkpoint(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text())
        parts = {p.stem: load_file(str(p)) for p in sorted(path.glob("*.safetensors"))}
    except (OSError, ValueError) as exc:
        raise BcosdiffError(f"checkpoint {path} is unreadable: {exc}") from None
    return parts, state
