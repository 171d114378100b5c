"""The training loop (Hugging Face Accelerate: CPU, one GPU, or many processes).

Data order and noise are functions of ``(seed, step, process rank)``, so a resumed run sees
exactly the batches and noise it would have seen without the interruption, and processes
see disjoint data (global sample index ``(step·world + rank)·batch + j``).
"""

from __future__ import annotations

import csv
import glob
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..data import ShapesDataset
from ..data.emoji_scenes import EmojiScenes
from ..data.images import ImageFolderDataset
from ..data.laion import WebDatasetShards
from ..diffusion import DiffusionProcess, drop_prompts, encode_image
from ..errors import BcosdiffError
from ..modeldir import atomic_write, load_unet, read_config, save_unet, update_config
from ..networks import UNet, UNetConfig
from ..text import TextConfig, TextEncoder
from ..variants import get_variant
from .checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    remove_partial,
    save_checkpoint,
)
from .config import TrainConfig
from .recipe import (
    Teacher,
    adaptive_clip_,
    immiscible_noise,
    loss_weights,
    lr_factor,
    project_bcos_weights,
)
from .transfer import bcosify_from

__all__ = ["StepInfo", "build_dataset", "train"]


@dataclass
class StepInfo:
    """What a training callback sees after each optimiser step."""

    step: int
    loss: float
    captions: list[str]
    process_index: int
    num_processes: int
    model: torch.nn.Module  # the unwrapped, trained (non-EMA) network


def build_dataset(data: dict, seed: int) -> torch.utils.data.Dataset:
    """``{"kind": "shapes" | "folder" | "emoji" | "laion", ...}`` -> a training data set."""
    options = dict(data)
    kind = options.pop("kind", "shapes")
    seed = options.pop("seed", seed)
    try:
        if kind == "shapes":
            return ShapesDataset(seed=seed, **options)
        if kind == "folder":
            return ImageFolderDataset(seed=seed, **options)
        if kind == "emoji":  # scenes composed from an emoji import
            return EmojiScenes(seed=seed, **options)
        if kind == "laion":
            pattern = options.pop("shards")
            shards = sorted(glob.glob(pattern)) if isinstance(pattern, str) else list(pattern)
            return WebDatasetShards(shards, seed=seed, **options)
    except TypeError as exc:
        raise BcosdiffError(f"bad options for data kind {kind!r}: {exc}") from None
    raise BcosdiffError(f"unknown data kind {kind!r} (shapes, folder, emoji, laion)")


class _StepBatches(torch.utils.data.Sampler):
    """Batches of indices for steps ``start..steps-1`` of one process."""

    def __init__(self, length: int, batch: int, start: int, steps: int, rank: int, world: int):
        self.length, self.batch = length, batch
        self.start, self.steps, self.rank, self.world = start, steps, rank, world

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self):
        for step in range(self.start, self.steps):
            first = (step * self.world + self.rank) * self.batch
            yield [(first + j) % self.length for j in range(self.batch)]


def _collate(items: list[dict]) -> dict:
    return {
        "image": torch.stack([item["image"] for item in items]),
        "caption": [item["caption"] for item in items],
    }


METRIC_COLUMNS = ["step", "loss", "lr", "images_per_s", "wall_s"]


def _restart_metrics(path: Path, start: int) -> float:
    """Keep the metric rows up to the resumed step (later ones were lost with the run);
    return the wall time already spent, so ``wall_s`` stays cumulative across resumes."""
    rows = []
    if path.exists():
        with open(path, newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= start]
    text = (
        ",".join(METRIC_COLUMNS)
        + "\n"
        + "".join(",".join(r[c] for c in METRIC_COLUMNS) + "\n" for r in rows)
    )
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return float(rows[-1]["wall_s"]) if rows else 0.0


def _step_seed(seed: int, step: int, rank: int) -> int:
    """A distinct, reproducible generator seed per (run seed, step, process)."""
    return (seed * 1_000_003 + step) * 4099 + rank


def initial_lineage(init_from: str | None) -> dict | None:
    """What a run started from: the model directory and how many steps had trained it
    (its own steps plus those of whatever it started from), or None for a fresh start.
    Read once when the run starts and stored in every checkpoint, so a model card can count
    all the steps behind a fine-tuned model even after its starting point is replaced."""
    if not init_from:
        return None
    try:
        training = read_config(Path(init_from)).get("training", {})
    except BcosdiffError:
        training = {}
    steps = int(training.get("steps", 0)) + int(training.get("init", {}).get("total_steps", 0))
    return {"from": str(init_from), "total_steps": steps}


# Settings a resumed run may change: where and how often it writes, how long it runs, and
# the guidance its exported model defaults to. Any other difference would make the resumed
# run a different run than the one its checkpoints (and the model card) describe.
RESUMABLE_CHANGES = frozenset(
    {"output_dir", "steps", "num_workers", "log_every", "checkpoint_every", "keep_last", "guidance"}
)


def _check_resumable(
    checkpoint: Path, state: dict, config: TrainConfig, unet_config: UNetConfig
) -> None:
    """Refuse to resume ``checkpoint`` under a config that would train another run."""
    saved = state.get("config")
    if saved is None:  # written before checkpoints recorded their config
        return
    if saved.get("unet") not in (None, unet_config.to_dict()):
        raise BcosdiffError(f"checkpoint {checkpoint} was made with another U-Net config")
    current = json.loads(json.dumps(config.to_dict()))
    changed = sorted(
        key
        # Settings older checkpoints did not record yet are not compared.
        for key in (set(saved) & set(current)) - RESUMABLE_CHANGES - {"unet"}
        if saved[key] != current[key]
    )
    if changed:
        raise BcosdiffError(
            f"checkpoint {checkpoint} was made with another training config "
            f"({', '.join(changed)} differ); resume with that config or train into a new "
            "output directory"
        )
    if int(state["step"]) > config.steps:
        raise BcosdiffError(
            f"checkpoint {checkpoint} is at step {state['step']}, past this run's "
            f"{config.steps} steps; raise steps or train into a new output directory"
        )


def _weighted_mse(error: Tensor, weights: Tensor | None) -> Tensor:
    """Mean squared error, each sample's mean weighted by ``weights`` (``None``: uniform)."""
    if weights is None:
        return error.square().mean()
    return (weights * error.square().flatten(1).mean(dim=1)).mean()


def train(
    config: TrainConfig,
    progress: bool = True,
    callbacks: Sequence[Callable[[StepInfo], None]] = (),
    command: str | None = None,
) -> Path:
    """Train (or resume) into ``config.output_dir``; return the exported model directory.

    ``callbacks`` are called on every process after every step (for monitoring and tests);
    ``command`` (the invocation) is recorded in checkpoints for the model card.
    """
    from accelerate import Accelerator

    # cpu=True is what makes Accelerate set up gloo for several CPU processes (torchrun).
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision, cpu=not torch.cuda.is_available()
    )
    out = Path(config.output_dir)
    variant = get_variant(config.variant)
    text_config = TextConfig.from_dict({"mode": variant.text_mode, **config.text})
    text = TextEncoder(text_config).to(accelerator.device)
    process = DiffusionProcess.from_dict(variant.diffusion_section())
    dataset = build_dataset(config.data, config.seed)
    size = getattr(dataset, "size", config.unet.get("sample_size", 32))
    unet_config = UNetConfig.from_dict(
        {
            "kind": variant.unet_kind,
            "in_channels": process.channels,
            "out_channels": process.channels,
            "context_dim": text.dim,
            "sample_size": size,
            **config.unet,
        }
    )
    torch.manual_seed(config.seed)
    model = UNet(unet_config)
    ema = UNet(unet_config).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    optimiser = torch.optim.AdamW(
        model.parameters(),
        lr=config.lr,
        betas=config.adam_betas,
        weight_decay=config.weight_decay,
    )

    start = 0
    lineage = initial_lineage(config.init_from)
    if accelerator.is_main_process and (out / "checkpoints").is_dir():
        remove_partial(out / "checkpoints")
    checkpoint = latest_checkpoint(out / "checkpoints")
    if checkpoint is not None:
        parts, state = load_checkpoint(checkpoint)
        _check_resumable(checkpoint, state, config, unet_config)
        model.load_state_dict(parts["model"])
        ema.load_state_dict(parts["ema"])
        optimiser.load_state_dict(optimizer_from_tensors(parts["optimizer"], state["param_groups"]))
        start = int(state["step"])
        lineage = state.get("init", lineage)
    elif config.init_from:
        if config.init_transfer == "bcosify":
            bcosify_from(model, config.init_from)
        else:
            initial = load_unet(Path(config.init_from))
            if initial.config != unet_config:
                raise BcosdiffError(f"{config.init_from} has another U-Net config than this run")
            model.load_state_dict(initial.state_dict())
        if config.weight_norm == "forced":
            project_bcos_weights(model)
        ema.load_state_dict(model.state_dict())
    elif config.weight_norm == "forced":
        project_bcos_weights(model)
        ema.load_state_dict(model.state_dict())
    teacher = (
        Teacher(config.distill_from, process, accelerator.device) if config.distill_from else None
    )
    model, optimiser = accelerator.prepare(model, optimiser)
    ema.to(accelerator.device)

    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=_StepBatches(
            len(dataset),
            config.batch_size,
            start,
            config.steps,
            accelerator.process_index,
            accelerator.num_processes,
        ),
        num_workers=config.num_workers,
        collate_fn=_collate,
    )
    log_path = out / "metrics.csv"
    wall_offset = 0.0
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        wall_offset = _restart_metrics(log_path, start)
        log_file = open(log_path, "a", newline="")  # noqa: SIM115 - closed in finally
        log = csv.writer(log_file)
    bar = None
    if progress and accelerator.is_main_process:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=start, desc="train", dynamic_ncols=True)
    running, count, seen = 0.0, 0, 0
    tick = wall0 = time.perf_counter()
    step = start
    try:
        for batch in loader:
            g = torch.Generator().manual_seed(
                _step_seed(config.seed, step, accelerator.process_index)
            )
            x0 = encode_image(batch["image"], process.encoding).to(accelerator.device)
            n = x0.shape[0]
            t = torch.randint(0, process.num_train_timesteps, (n,), generator=g)
            eps = process.noise(tuple(x0.shape), generator=g).to(accelerator.device)
            t = t.to(accelerator.device)
            if config.noise_assignment == "immiscible":
                eps = immiscible_noise(x0, eps, process)
            x_t = process.q_sample(x0, t, eps)
            cond = text(batch["caption"])
            context, mask = cond.embeddings, cond.mask
            # The teacher's prompt dropout replays the student's draws from a copy of g.
            drops = torch.Generator().set_state(g.get_state()) if teacher else None
            if config.prompt_dropout > 0:  # drawn after t and ε: those stay as without it
                context, mask = drop_prompts(context, mask, config.prompt_dropout, g)
            for group in optimiser.param_groups:
                group["lr"] = config.lr * lr_factor(
                    step, config.warmup_steps, config.steps, config.lr_schedule
                )
            with accelerator.autocast():
                prediction = model(x_t, t, context, mask)
            loss = _weighted_mse(
                prediction.float() - process.training_target(x0, eps),
                loss_weights(process, t, config.loss_weighting, config.min_snr_gamma),
            )
            if teacher is not None and config.distill_weight > 0:
                taught = teacher.predicted_x0(
                    x_t, t, batch["caption"], drops, config.prompt_dropout
                )
                own = process.predicted_x0(prediction.float(), x_t, t)
                loss = loss + config.distill_weight * (own - taught).square().mean()
            optimiser.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if config.agc_factor > 0:
                accelerator.unscale_gradients()
                adaptive_clip_(model.parameters(), config.agc_factor)
            elif config.grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimiser.step()
            if config.weight_norm == "forced":
                project_bcos_weights(accelerator.unwrap_model(model))
            with torch.no_grad():
                source = accelerator.unwrap_model(model).parameters()
                torch._foreach_lerp_(list(ema.parameters()), list(source), 1 - config.ema_decay)
            step += 1
            if not math.isfinite(loss.item()):
                raise BcosdiffError(f"loss became {loss.item()} at step {step}")
            running += loss.item()
            count += 1
            if callbacks:
                info = StepInfo(
                    step,
                    loss.item(),
                    list(batch["caption"]),
                    accelerator.process_index,
                    accelerator.num_processes,
                    accelerator.unwrap_model(model),
                )
                for callback in callbacks:
                    callback(info)
            seen += n * accelerator.num_processes
            if bar is not None:
                bar.update(1)
            if step % config.log_every == 0 or step == config.steps:
                now = time.perf_counter()
                rate = seen / (now - tick)
                if accelerator.is_main_process:
                    mean_loss = running / count
                    log.writerow(
                        [
                            step,
                            f"{mean_loss:.6f}",
                            f"{optimiser.param_groups[0]['lr']:.3g}",
                            f"{rate:.2f}",
                            f"{wall_offset + now - wall0:.1f}",
                        ]
                    )
                    log_file.flush()
                    if bar is not None:
                        bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{rate:.1f}")
                running, count, seen, tick = 0.0, 0, 0, now
            if step % config.checkpoint_every == 0 or step == config.steps:
                accelerator.wait_for_everyone()
                if accelerator.is_main_process:
                    opt_tensors, groups = optimizer_to_tensors(optimiser.state_dict())
                    save_checkpoint(
                        out / "checkpoints",
                        step,
                        {
                            "model": accelerator.unwrap_model(model).state_dict(),
                            "ema": ema.state_dict(),
                            "optimizer": opt_tensors,
                        },
                        {
                            "step": step,
                            "param_groups": groups,
                            "config": {**config.to_dict(), "unet": unet_config.to_dict()},
                            **({"init": lineage} if lineage else {}),
                            **({"command": command} if command else {}),
                        },
                        config.keep_last,
                    )
    finally:
        if bar is not None:
            bar.close()
        if accelerator.is_main_process:
            log_file.close()
    model_dir = out / "model"
    if accelerator.is_main_process:
        save_unet(ema, model_dir)
        update_config(
            model_dir,
            variant=config.variant,
            diffusion=process.to_dict(),
            text=text_config.to_dict(),
            sampling={"guidance": config.guidance},
            training={
                "steps": step,
                **({"init": lineage} if lineage else {}),
                "config": config.to_dict(),
            },
        )
    accelerator.wait_for_everyone()
    return model_dir
