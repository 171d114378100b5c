"""Turn a training checkpoint into a model directory (config.json + unet.safetensors)."""

from __future__ import annotations

from pathlib import Path

from ..diffusion import DiffusionProcess
from ..errors import BcosdiffError
from ..modeldir import save_unet, update_config
from ..networks import UNet, UNetConfig
from ..text import TextConfig
from ..variants import get_variant
from .checkpoint import latest_checkpoint, load_checkpoint

__all__ = ["export_checkpoint"]


def export_checkpoint(
    run_dir: str | Path, out: str | Path, weights: str = "ema", checkpoint: str | None = None
) -> Path:
    """Write the ``weights`` ("ema" or "model") of a run's (latest) checkpoint to ``out``."""
    run_dir = Path(run_dir)
    path = (
        run_dir / "checkpoints" / checkpoint
        if checkpoint
        else latest_checkpoint(run_dir / "checkpoints")
    )
    if path is None or not path.is_dir():
        raise BcosdiffError(f"no checkpoint found in {run_dir / 'checkpoints'}")
    if weights not in ("ema", "model"):
        raise BcosdiffError("weights must be 'ema' or 'model'")
    parts, state = load_checkpoint(path)
    config = state["config"]
    variant = get_variant(config["variant"])
    text = TextConfig.from_dict({"mode": variant.text_mode, **config.get("text", {})})
    unet = UNet(UNetConfig.from_dict(config["unet"]))
    unet.load_state_dict(parts[weights])
    save_unet(unet, Path(out))
    update_config(
        Path(out),
        variant=config["variant"],
        diffusion=DiffusionProcess.from_dict(variant.diffusion_section()).to_dict(),
        text=text.to_dict(),
        training={"steps": state["step"], "weights": weights, "config": config},
    )
    return Path(out)
