"""Turn a training checkpoint into a model directory (config.json + unet.safetensors)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

from ..diffusion import DiffusionProcess, check_guidance
from ..errors import BcosdiffError
from ..modeldir import atomic_write, save_unet, update_config
from ..networks import UNet, UNetConfig
from ..text import TextConfig
from ..variants import get_variant
from .checkpoint import latest_checkpoint, load_checkpoint
from .loop import initial_lineage

__all__ = ["export_checkpoint", "trained_compounds", "trained_vocabulary"]


def export_checkpoint(
    run_dir: str | Path,
    out: str | Path,
    *,
    weights: str = "ema",
    checkpoint: str | None = None,
    guidance: float | None = None,
    keep_card: bool = False,
) -> Path:
    """Write the ``weights`` ("ema" or "model") of a run's (latest) checkpoint to ``out``.

    ``guidance`` sets the model's default guidance scale (``sampling.guidance``); by default
    it is the training config's ``guidance``. The new directory replaces ``out`` whole, with
    a card generated from the run; ``keep_card`` keeps the ``MODEL_CARD.md`` that ``out``
    already has (a hand-written card with the data's licences, say; its numbers are then
    the writer's to update)."""
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
    if guidance is not None:
        try:
            check_guidance(guidance)
        except ValueError as exc:
            raise BcosdiffError(str(exc)) from None
    parts, state = load_checkpoint(path)
    config = {k: v for k, v in state["config"].items() if k != "output_dir"}
    # The training config stays as it was trained; only the model's default changes.
    default = float(config.get("guidance", 1.0) if guidance is None else guidance)
    if "init" not in state and config.get("init_from"):  # checkpoints from before lineage
        state["init"] = initial_lineage(config["init_from"])
    variant = get_variant(config["variant"])
    text = TextConfig.from_dict({"mode": variant.text_mode, **config.get("text", {})})
    unet = UNet(UNetConfig.from_dict(config["unet"]))
    unet.load_state_dict(parts[weights])
    out = Path(out)
    kept_card = None
    if keep_card:
        try:
            kept_card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
        except OSError:
            raise BcosdiffError(f"no MODEL_CARD.md in {out} to keep") from None
    with _staged(out) as staging:
        _write_model(
            staging,
            name=out.name,
            unet=unet,
            variant=variant,
            text=text,
            config=config,
            state=state,
            run_dir=run_dir,
            weights=weights,
            guidance=default,
        )
        if kept_card is not None:
            (staging / "MODEL_CARD.md").write_text(kept_card, encoding="utf-8")
    return out


@contextmanager
def _staged(out: Path):
    """A fresh hidden sibling directory to write into; on success it replaces ``out`` by
    renames, so a crash at any point leaves the old model, no model, or the new one at
    ``out`` — never a directory mixing the two. An existing ``out`` that is not a model
    directory is refused rather than replaced."""
    foreign = out.exists() and not (out / "config.json").is_file()
    if foreign and (not out.is_dir() or any(out.iterdir())):
        raise BcosdiffError(f"{out} exists and is not a model directory: not replacing it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes 0700
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{staging.name[-8:]}"
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def trained_compounds(data: dict) -> list[str]:
    """The multi-word names of a run's data that the phrase rules would cut
    (:func:`~bcosdiff.explain.phrases.compounds_to_keep`): the concept names of emoji data,
    read from the import the run was trained on; none for other data, or when the import
    is not on this machine (a warning says so)."""
    return _trained_words(data)[0]


def trained_vocabulary(data: dict) -> list[str] | None:
    """Every word a caption of a run's data can hold, sorted
    (:func:`~bcosdiff.explain.tokens.unknown_words` names the prompt words outside it): for
    the generated captions of shapes and emoji data; None for image folders and web shards,
    whose captions are open-ended, or when the emoji import is not on this machine (a
    warning says so)."""
    return _trained_words(data)[1]


def _trained_words(data: dict) -> tuple[list[str], list[str] | None, list[str] | None]:
    """``(compounds, vocabulary, depicting words)`` of a run's data, its data set built
    once; no vocabularies for open-ended captions."""
    from ..explain.phrases import compounds_to_keep
    from .loop import build_dataset

    kind = data.get("kind", "shapes")
    if kind not in ("shapes", "emoji"):
        return [], None, None
    try:
        dataset = build_dataset(data, seed=0)
    except (BcosdiffError, OSError) as exc:
        warnings.warn(f"no multi-word names or vocabulary exported: {exc}", stacklevel=3)
        return [], None, None
    compounds = compounds_to_keep(c.name for c in dataset.concepts) if kind == "emoji" else []
    return compounds, sorted(dataset.vocabulary()), sorted(dataset.depicting_vocabulary())


def _explain_section(data: dict) -> dict:
    compounds, vocabulary, depicting = _trained_words(data)
    return {
        **({"compounds": compounds} if compounds else {}),
        **({"vocabulary": vocabulary} if vocabulary is not None else {}),
        **({"depicting": depicting} if depicting is not None else {}),
    }


def _write_model(
    directory, *, name, unet, variant, text, config, state, run_dir, weights, guidance
) -> None:
    save_unet(unet, directory)
    explain = _explain_section(config.get("data") or {})
    update_config(
        directory,
        variant=config["variant"],
        diffusion=DiffusionProcess.from_dict(variant.diffusion_section()).to_dict(),
        text=text.to_dict(),
        sampling={"guidance": guidance},
        **({"explain": explain} if explain else {}),
        training={
            "steps": state["step"],
            **({"init": state["init"]} if state.get("init") else {}),
            "weights": weights,
            "config": config,
        },
    )
    card = model_card(
        name,
        unet=unet,
        variant=variant.name,
        state=state,
        metrics_path=run_dir / "metrics.csv",
        weights=weights,
        guidance=guidance,
    )
    atomic_write(directory / "MODEL_CARD.md", lambda tmp: tmp.write_text(card, encoding="utf-8"))


def _metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def model_card(
    name: str,
    *,
    unet: UNet,
    variant: str,
    state: dict,
    metrics_path: Path,
    weights: str,
    guidance: float | None = None,
) -> str:
    """A markdown card with what was measured during training (read from its metrics log);
    ``guidance`` is the model's default scale when the export chose another than training."""
    config = state["config"]
    trained_scale = config.get("guidance", 1.0)
    scale = trained_scale if guidance is None else guidance
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
        *(
            [
                f"- initialised from `{init['from']}` ({init['total_steps']} steps): "
                f"{init['total_steps'] + step} training steps in all"
            ]
            if (init := state.get("init"))
            else []
        ),
        f"- classifier-free guidance: prompt dropout {config.get('prompt_dropout', 0.0)}, "
        f"default scale {scale}"
        + (f" (the training config's: {trained_scale})" if scale != trained_scale else ""),
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
