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
from collections.abc import Callable, Mapping, Sequence
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
    ema_decay_at,
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


# Settings a resumed run may change: where and how often it writes, how long it runs (so
# long as no step already taken would have had another learning rate), and the guidance its
# exported model defaults to. Any other difference would make the resumed run a different
# run than the one its checkpoints (and the model card) describe.
RESUMABLE_CHANGES = frozenset(
    {
        "output_dir",
        "steps",
        "lr_cooldown_steps",
        "num_workers",
        "log_every",
        "checkpoint_every",
        "keep_last",
        "keep_every",
        "guidance",
    }
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
    taken = int(state["step"])
    if taken > config.steps:
        raise BcosdiffError(
            f"checkpoint {checkpoint} is at step {taken}, past this run's "
            f"{config.steps} steps; raise steps or train into a new output directory"
        )
    settings = vars(config)
    moved = next(
        (s for s in range(taken) if _rate_share(saved, s) != _rate_share(settings, s)), None
    )
    if moved is not None:
        raise BcosdiffError(
            f"checkpoint {checkpoint} is at step {taken}, but this config gives its step "
            f"{moved} another learning rate (steps or lr_cooldown_steps differ); keep "
            "the schedule of the steps already taken or train into a new output directory"
        )


def _rate_share(settings: Mapping, step: int) -> float:
    """The learning rate of ``step`` as a share of ``lr`` under the training ``settings``: a
    config's fields (``vars(config)``, no copy) or a config as a checkpoint records it, whose
    keys it predates take their defaults."""
    return lr_factor(
        step,
        int(settings.get("warmup_steps", TrainConfig.warmup_steps)),
        int(settings.get("steps", TrainConfig.steps)),
        settings.get("lr_schedule", TrainConfig.lr_schedule),
        int(settings.get("lr_cooldown_steps", TrainConfig.lr_cooldown_steps)),
    )


def _weighted_mse(error: Tensor, weights: Tensor | None) -> Tensor:
    """Mean squared error, each sample's mean weighted by ``weights`` (``None``: uniform)."""
    if weights is None:
        return error.square().mean()
    return (weights * error.square().flatten(1).mean(dim=1)).mean()


@dataclass
class _Run:
    """Everything one training run holds: its parts, its state and where it writes."""

    config: TrainConfig
    accelerator: object
    out: Path
    dataset: torch.utils.data.Dataset
    process: DiffusionProcess
    text_config: TextConfig
    text: TextEncoder
    unet_config: UNetConfig
    model: torch.nn.Module
    ema: UNet
    optimiser: torch.optim.Optimizer
    teacher: Teacher | None
    start: int
    lineage: dict | None


def _build_run(config: TrainConfig) -> _Run:
    """The run's parts, resumed from its latest checkpoint or started afresh."""
    from accelerate import Accelerator

    # cpu=True is what makes Accelerate set up gloo for several CPU processes (torchrun).
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision, cpu=not torch.cuda.is_available()
    )
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
    run = _Run(
        config,
        accelerator,
        Path(config.output_dir),
        dataset,
        process,
        text_config,
        text,
        unet_config,
        model,
        ema,
        optimiser,
        None,
        0,
        initial_lineage(config.init_from),
    )
    _start_weights(run)
    if config.distill_from:
        run.teacher = Teacher(config.distill_from, process, accelerator.device)
    run.model, run.optimiser = accelerator.prepare(run.model, run.optimiser)
    run.ema.to(accelerator.device)
    return run


def _start_weights(run: _Run) -> None:
    """Load the latest checkpoint (weights, EMA, optimiser, step), or the starting model of
    ``init_from``, or keep the fresh initialisation."""
    config, checkpoints = run.config, run.out / "checkpoints"
    if run.accelerator.is_main_process and checkpoints.is_dir():
        remove_partial(checkpoints)
    checkpoint = latest_checkpoint(checkpoints)
    if checkpoint is not None:
        parts, state = load_checkpoint(checkpoint)
        _check_resumable(checkpoint, state, config, run.unet_config)
        run.model.load_state_dict(parts["model"])
        run.ema.load_state_dict(parts["ema"])
        run.optimiser.load_state_dict(
            optimizer_from_tensors(parts["optimizer"], state["param_groups"])
        )
        run.start = int(state["step"])
        run.lineage = state.get("init", run.lineage)
        return
    if config.init_from and config.init_transfer == "bcosify":
        bcosify_from(run.model, config.init_from)
    elif config.init_from:
        initial = load_unet(Path(config.init_from))
        if initial.config != run.unet_config:
            raise BcosdiffError(f"{config.init_from} has another U-Net config than this run")
        run.model.load_state_dict(initial.state_dict())
    if config.weight_norm == "forced":
        project_bcos_weights(run.model)
    if config.init_from or config.weight_norm == "forced":
        run.ema.load_state_dict(run.model.state_dict())


def _loss(run: _Run, batch: dict, step: int) -> Tensor:
    """The training loss of one batch. Time steps, noise and prompt dropout are drawn, in
    that order, from a generator seeded by ``(seed, step, process)``."""
    config, process, device = run.config, run.process, run.accelerator.device
    g = torch.Generator().manual_seed(_step_seed(config.seed, step, run.accelerator.process_index))
    x0 = encode_image(batch["image"], process.encoding).to(device)
    t = torch.randint(0, process.num_train_timesteps, (x0.shape[0],), generator=g)
    eps = process.noise(tuple(x0.shape), generator=g).to(device)
    t = t.to(device)
    if config.noise_assignment == "immiscible":
        eps = immiscible_noise(x0, eps, process)
    x_t = process.q_sample(x0, t, eps)
    cond = run.text(batch["caption"])
    context, mask = cond.embeddings, cond.mask
    # The teacher's prompt dropout replays the student's draws from a copy of g.
    drops = torch.Generator().set_state(g.get_state()) if run.teacher else None
    if config.prompt_dropout > 0:  # drawn after t and ε: those stay as without it
        context, mask = drop_prompts(context, mask, config.prompt_dropout, g)
    with run.accelerator.autocast():
        prediction = run.model(x_t, t, context, mask)
    loss = _weighted_mse(
        prediction.float() - process.training_target(x0, eps, t),
        loss_weights(process, t, config.loss_weighting, config.min_snr_gamma),
    )
    if run.teacher is not None and config.distill_weight > 0:
        taught = run.teacher.predicted_x0(x_t, t, batch["caption"], drops, config.prompt_dropout)
        own = process.predicted_x0(prediction.float(), x_t, t)
        loss = loss + config.distill_weight * (own - taught).square().mean()
    return loss


def _update(run: _Run, loss: Tensor, step: int) -> None:
    """One optimiser step on ``loss`` (learning rate of ``step``, clipping, forced weight
    norms), then the EMA."""
    config, accelerator, optimiser = run.config, run.accelerator, run.optimiser
    for group in optimiser.param_groups:
        group["lr"] = config.lr * _rate_share(vars(config), step)
    optimiser.zero_grad(set_to_none=True)
    accelerator.backward(loss)
    if config.agc_factor > 0:
        accelerator.unscale_gradients()
        adaptive_clip_(run.model.parameters(), config.agc_factor)
    elif config.grad_clip > 0:
        accelerator.clip_grad_norm_(run.model.parameters(), config.grad_clip)
    optimiser.step()
    trained = accelerator.unwrap_model(run.model)
    if config.weight_norm == "forced":
        project_bcos_weights(trained)
    with torch.no_grad():
        params = list(trained.parameters())
        decay = ema_decay_at(step, config.ema_decay, config.ema_warmup)
        torch._foreach_lerp_(list(run.ema.parameters()), params, 1 - decay)


class _Metrics:
    """``metrics.csv`` (one row per ``log_every`` steps: mean loss, learning rate, images per
    second, cumulative wall time) and the progress bar, on the main process."""

    def __init__(self, run: _Run, progress: bool):
        self.run, self.main = run, run.accelerator.is_main_process
        self.running, self.count, self.seen = 0.0, 0, 0
        self.tick = self.wall0 = time.perf_counter()
        self.bar = self.file = None
        if not self.main:
            return
        run.out.mkdir(parents=True, exist_ok=True)
        self.wall_offset = _restart_metrics(run.out / "metrics.csv", run.start)
        self.file = open(run.out / "metrics.csv", "a", newline="")  # noqa: SIM115 - close()
        self.log = csv.writer(self.file)
        if progress:
            from tqdm.auto import tqdm

            total = run.config.steps
            self.bar = tqdm(total=total, initial=run.start, desc="train", dynamic_ncols=True)

    def add(self, step: int, loss: float, images: int) -> None:
        self.running += loss
        self.count += 1
        self.seen += images
        if self.bar is not None:
            self.bar.update(1)
        if step % self.run.config.log_every and step != self.run.config.steps:
            return
        now = time.perf_counter()
        rate = self.seen / (now - self.tick)
        if self.main:
            mean_loss = self.running / self.count
            lr = self.run.optimiser.param_groups[0]["lr"]
            wall = self.wall_offset + now - self.wall0
            self.log.writerow([step, f"{mean_loss:.6f}", f"{lr:.3g}", f"{rate:.2f}", f"{wall:.1f}"])
            self.file.flush()
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{rate:.1f}")
        self.running, self.count, self.seen, self.tick = 0.0, 0, 0, now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()


def _save(run: _Run, step: int, command: str | None) -> None:
    """An atomic checkpoint of ``step``: weights, EMA, optimiser, config and lineage."""
    run.accelerator.wait_for_everyone()
    if not run.accelerator.is_main_process:
        return
    opt_tensors, groups = optimizer_to_tensors(run.optimiser.state_dict())
    save_checkpoint(
        run.out / "checkpoints",
        step,
        {
            "model": run.accelerator.unwrap_model(run.model).state_dict(),
            "ema": run.ema.state_dict(),
            "optimizer": opt_tensors,
        },
        {
            "step": step,
            "param_groups": groups,
            "config": {**run.config.to_dict(), "unet": run.unet_config.to_dict()},
            **({"init": run.lineage} if run.lineage else {}),
            **({"command": command} if command else {}),
        },
        run.config.keep_last,
        run.config.keep_every,
    )


def _export(run: _Run, step: int) -> Path:
    """The EMA weights as a model directory ``OUT/model``."""
    model_dir = run.out / "model"
    if run.accelerator.is_main_process:
        save_unet(run.ema, model_dir)
        update_config(
            model_dir,
            variant=run.config.variant,
            diffusion=run.process.to_dict(),
            text=run.text_config.to_dict(),
            sampling={"guidance": run.config.guidance},
            training={
                "steps": step,
                **({"init": run.lineage} if run.lineage else {}),
                "config": run.config.to_dict(),
            },
        )
    run.accelerator.wait_for_everyone()
    return model_dir


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
    run = _build_run(config)
    accelerator = run.accelerator
    loader = torch.utils.data.DataLoader(
        run.dataset,
        batch_sampler=_StepBatches(
            len(run.dataset),
            config.batch_size,
            run.start,
            config.steps,
            accelerator.process_index,
            accelerator.num_processes,
        ),
        num_workers=config.num_workers,
        collate_fn=_collate,
    )
    metrics = _Metrics(run, progress)
    step = run.start
    try:
        for batch in loader:
            loss = _loss(run, batch, step)
            _update(run, loss, step)
            step += 1
            if not math.isfinite(loss.item()):
                raise BcosdiffError(f"loss became {loss.item()} at step {step}")
            info = StepInfo(
                step,
                loss.item(),
                list(batch["caption"]),
                accelerator.process_index,
                accelerator.num_processes,
                accelerator.unwrap_model(run.model),
            )
            for callback in callbacks:
                callback(info)
            metrics.add(step, loss.item(), len(batch["caption"]) * accelerator.num_processes)
            if step % config.checkpoint_every == 0 or step == config.steps:
                _save(run, step, command)
    finally:
        metrics.close()
    return _export(run, step)
