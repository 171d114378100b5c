"""Model directories: ``config.json`` plus weights in safetensors (never pickle).

A model directory holds one ``config.json`` whose sections describe the parts of a model
(``"unet"`` here; later the diffusion process and the text encoder) and one safetensors file
per part with trainable weights (``unet.safetensors``). Every file is written atomically
(temporary file in the same directory, then ``os.replace``), so a crash never leaves a
truncated file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import ModelLoadError
from .networks import UNet, UNetConfig

__all__ = [
    "CONFIG_NAME",
    "atomic_write",
    "load_unet",
    "read_config",
    "read_weights",
    "save_unet",
    "update_config",
    "update_config_section",
    "write_weights",
]

CONFIG_NAME = "config.json"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, fsync it, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def inside(directory: Path, name: str) -> Path:
    """``directory / name``, refused when a symlink takes it outside the directory."""
    path = Path(directory) / name
    if path.is_symlink() or path.exists():
        resolved, root = path.resolve(), Path(directory).resolve()
        if root not in resolved.parents:
            raise ModelLoadError(f"{path} points outside its model directory ({resolved})")
    return path


def read_config(directory: Path) -> dict:
    if not Path(directory).is_dir():
        raise ModelLoadError(f"model directory not found: {directory}")
    path = inside(directory, CONFIG_NAME)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return data


def update_config(directory: Path, **sections: dict) -> None:
    """Merge ``sections`` into the directory's ``config.json`` (created when absent)."""
    path = Path(directory) / CONFIG_NAME
    data = read_config(directory) if path.exists() else {}
    data.update(sections)
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def update_config_section(
    directory: Path, section: str, *, drop: tuple[str, ...] = (), **values
) -> None:
    """Merge ``values`` into one section of the directory's ``config.json``, keeping the
    section's other keys (two calibrations of one section do not erase each other) except
    those named in ``drop`` (a record of limits that ``values`` replace)."""
    data = read_config(directory) if (Path(directory) / CONFIG_NAME).exists() else {}
    current = data.get(section, {})
    current = current if isinstance(current, dict) else {}
    kept = {k: v for k, v in current.items() if k not in drop}
    update_config(directory, **{section: {**kept, **values}})


def write_weights(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None):
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(contiguous, str(tmp), metadata=metadata))


def _missing_weights(path: Path) -> ModelLoadError:
    pickles = sorted(p.name for p in path.parent.glob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        return ModelLoadError(
            f"{path.parent} holds only pickled weights ({', '.join(pickles[:3])}); bcosdiff "
            f"loads safetensors only and never unpickles (convert them to {path.name})"
        )
    return ModelLoadError(f"weights file is missing: {path}")


def weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes declared in a safetensors header, read without loading any tensor."""
    path = Path(path)
    if not path.is_file():
        raise _missing_weights(path)
    try:
        with safe_open(str(path), "pt") as handle:
            return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not a readable safetensors file ({exc})") from None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise _missing_weights(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not a readable safetensors file ({exc})") from None


def save_unet(unet: UNet, directory: Path) -> None:
    """Write ``unet.safetensors`` and the ``"unet"`` section of ``config.json``."""
    directory = Path(directory)
    write_weights(directory / "unet.safetensors", unet.state_dict(), {"format": "pt"})
    update_config(directory, unet=unet.config.to_dict())


def load_unet(directory: Path) -> UNet:
    """Rebuild the U-Net of a model directory; every stored tensor must match exactly."""
    config = read_config(directory)
    if "unet" not in config:
        raise ModelLoadError(f"{Path(directory) / CONFIG_NAME} has no 'unet' section")
    try:
        unet_config = UNetConfig.from_dict(config["unet"])
        # The layout is built without memory first: an absurd config costs nothing.
        with torch.device("meta"):
            layout = UNet(unet_config)
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:
        raise ModelLoadError(f"bad 'unet' section in {directory}: {exc}") from None
    weights = inside(directory, "unet.safetensors")
    # Compared against the file's header before anything is allocated: weights that fit the
    # config are no larger than the file on disk.
    declared = weight_shapes(weights)
    expected = {k: tuple(v.shape) for k, v in layout.state_dict().items()}
    missing = sorted(set(expected) - set(declared))
    unexpected = sorted(set(declared) - set(expected))
    wrong = [k for k in expected if k in declared and declared[k] != expected[k]]
    if missing or unexpected or wrong:
        detail = (
            (missing and f"missing {missing[:3]}")
            or (unexpected and f"unexpected {unexpected[:3]}")
            or f"shape mismatch {wrong[:3]}"
        )
        raise ModelLoadError(f"weights in {directory} do not fit its config: {detail}")
    unet = UNet(unet_config)
    unet.load_state_dict(read_weights(weights))
    return unet.eval()
