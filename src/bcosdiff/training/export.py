"""Turn a training checkpoint into a model directory (config.json + unet.safetensors)."""

from __future__ import annotations

import csv
import json
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
    config = {k: v for k, v in state["config"].items() if k != "output_dir"}
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
        sampling={"guidance": float(config.get("guidance", 1.0))},
        training={"steps": state["step"], "weights": weights, "config": config},
    )
    card = model_card(Path(out).name, unet, variant.name, state, run_dir / "metrics.csv", weights)
    (Path(out) / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    return Path(out)


def _metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def model_card(
    name: str, unet: UNet, variant: str, state: dict, metrics_path: Path, weights: str
) -> str:
    """A markdown card with what was measured during training (read from its metrics log)."""
    config = state["config"]
    step = int(state["step"])
    rows = [r for r in _metrics(metrics_path) if int(r["step"]) <= step]
    params = sum(p.numel() for p in unet.parameters())
    lines = [
        f"# {name}",
        "",
        f"- variant: `{variant}` (U-Net kind `{unet.config.kind}`, "
        f"{params / 1e6:.2f} M parameters, {unet.config.sample_size}×{unet.config.sample_size})",
        f"- U-Net: model_channels {unet.config.model_channels}, channel_mult "
        f"{list(unet.config.channel_mult)}, attention levels {list(unet.config.attention_levels)}",
        f"- data: `{json.dumps(config.get('data'))}`",
        f"- optimiser: AdamW lr {config['lr']}, batch {config['batch_size']} per process, "
        f"warm-up {config['warmup_steps']} steps, EMA decay {config['ema_decay']}",
        f"- weights: {weights}, after {step} steps",
        f"- classifier-free guidance: prompt dropout {config.get('prompt_dropout', 0.0)}, "
        f"default scale {config.get('guidance', 1.0)}",
    ]
    if rows:
        tail = rows[-max(1, len(rows) // 10) :]
        loss = sum(float(r["loss"]) for r in tail) / len(tail)
        rates = sorted(float(r["images_per_s"]) for r in rows)
        wall = float(rows[-1]["wall_s"])
        lines += [
            f"- wall time: {wall / 3600:.2f} h ({wall:.0f} s)",
            f"- final training loss (mean of the last {len(tail)} logged values): {loss:.5f}",
            f"- median throughput: {rates[len(rates) // 2]:.1f} images/s",
        ]
    if state.get("command"):
        lines.append(f"- command: `{state['command']}`")
    return "\n".join(lines) + "\n"
