"""Training configuration, read from YAML, TOML or JSON (never from pickles or code)."""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..configuration import ConfigRecord
from ..errors import BcosdiffError

__all__ = ["TrainConfig", "load_train_config"]


@dataclass
class TrainConfig(ConfigRecord):
    config_name = "training"
    config_error = BcosdiffError

    output_dir: str = "runs/bcos-x0-shapes"
    variant: str = "bcos-x0"
    unet: dict = field(default_factory=dict)  # UNetConfig overrides
    text: dict = field(default_factory=dict)  # TextConfig overrides
    data: dict = field(default_factory=lambda: {"kind": "shapes", "size": 32})
    steps: int = 10_000
    batch_size: int = 32  # per process
    lr: float = 3e-4
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    mixed_precision: str = "no"  # "no", "bf16" or "fp16" (Accelerate)
    num_workers: int = 0
    log_every: int = 25
    checkpoint_every: int = 500
    keep_last: int = 3
    keep_every: int = 0  # > 0: also keep the checkpoints at multiples of this step
    init_from: str | None = None  # model directory whose U-Net weights start a fresh run
    # How init_from's weights enter: "exact" (the same U-Net) or "bcosify" (an ordinary
    # U-Net of the same layout converted by name: bcosdiff.training.transfer).
    init_transfer: str = "exact"
    # Recipe options (bcosdiff.training.recipe); the defaults are the plain recipe.
    lr_schedule: str = "constant"  # or "cosine" (to zero at `steps`, after the warm-up)
    lr_cooldown_steps: int = 0  # constant schedule: the last N steps fall to zero as 1 − √p
    loss_weighting: str = "uniform"  # or "min_snr"
    min_snr_gamma: float = 5.0
    weight_norm: str = "free"  # or "forced": B-cos weights held at their initial norm
    distill_from: str | None = None  # a trained model whose predicted x0 the run follows
    distill_weight: float = 1.0  # λ of λ·‖x̂0 − x̂0(teacher)‖² (with distill_from)
    ema_warmup: bool = False  # decay min(ema_decay, (1 + t)/(10 + t)): early weights fade fast
    agc_factor: float = 0.0  # > 0: adaptive gradient clipping instead of grad_clip
    noise_assignment: str = "independent"  # or "immiscible" (noise matched to images)
    # Classifier-free guidance: the share of samples trained with an empty prompt (every
    # context position masked), and the guidance scale the exported model defaults to.
    prompt_dropout: float = 0.1
    guidance: float = 1.0

    def __post_init__(self) -> None:
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        problems = []
        for name in ("steps", "batch_size", "log_every", "checkpoint_every", "keep_last"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.keep_every < 0:
            problems.append("keep_every must be >= 0")
        if self.lr_cooldown_steps < 0:
            problems.append("lr_cooldown_steps must be >= 0")
        elif self.lr_cooldown_steps > 0 and self.lr_schedule != "constant":
            problems.append("lr_cooldown_steps needs lr_schedule 'constant'")
        elif self.lr_cooldown_steps > max(0, self.steps - self.warmup_steps):
            problems.append("lr_cooldown_steps must not reach into the warm-up")
        if self.lr <= 0:
            problems.append("lr must be positive")
        if not 0 <= self.ema_decay < 1:
            problems.append("ema_decay must be in [0, 1)")
        if not 0 <= self.prompt_dropout < 1:
            problems.append("prompt_dropout must be in [0, 1)")
        if not (self.guidance >= 0 and self.guidance != float("inf")):
            problems.append("guidance must be a finite number >= 0")
        choices = {
            "init_transfer": ("exact", "bcosify"),
            "lr_schedule": ("constant", "cosine"),
            "loss_weighting": ("uniform", "min_snr"),
            "weight_norm": ("free", "forced"),
            "noise_assignment": ("independent", "immiscible"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {', '.join(allowed)}")
        if self.init_transfer == "bcosify" and not self.init_from:
            problems.append("init_transfer 'bcosify' needs init_from")
        if not (self.agc_factor >= 0 and math.isfinite(self.agc_factor)):
            problems.append("agc_factor must be a finite number >= 0")
        if not self.min_snr_gamma > 0:
            problems.append("min_snr_gamma must be positive")
        if not (self.distill_weight >= 0 and math.isfinite(self.distill_weight)):
            problems.append("distill_weight must be a finite number >= 0")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            problems.append("mixed_precision must be 'no', 'bf16' or 'fp16'")
        if problems:
            raise BcosdiffError("invalid training config: " + "; ".join(problems))


def load_train_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    if path.suffix not in (".yaml", ".yml", ".toml", ".json"):
        raise BcosdiffError(f"config {path} must be .yaml, .yml, .toml or .json")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BcosdiffError(
            f"cannot read config {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise BcosdiffError(f"cannot parse {path}: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise BcosdiffError(f"config {path} must hold a mapping")
    return TrainConfig.from_dict(data)
