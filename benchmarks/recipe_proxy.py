"""The recipe proxy: rank emoji models from short runs on fixed measurements (one run, a table)

    python benchmarks/recipe_proxy.py --data data/emoji --model RUN_A/model \
        [--model RUN_B/model ...] [--prompts 120] [--two-object 50] [--val-scenes 256] \
        [--json F]
    python benchmarks/recipe_proxy.py --data data/emoji --run RUN [--run RUN2 ...] \
        [--every 1000] [--weights ema] --prompts 0 --two-object 0 --json F [--plot F.png]

For each model (a model directory or a bundled name), with everything fixed across models:

* the validation loss: pixel MSE of the predicted clean image on 256 held-out scenes
  (data seed ``VALIDATION_SEED``, the held-out caption templates), each noised at t = 100,
  300, 500, 700 and 900 with the same noise (:mod:`bcosdiff.evaluation.validation`), overall
  and, in a second table, per noise level;
* recognisability on a fixed prompt set, as ``benchmarks/emoji_recognisability.py`` measures
  it on its full set: top-1 / top-5 of ``--prompts`` one-emoji prompts, and the share of
  ``--two-object`` two-emoji prompts with both emoji recognised (prompt k with seed k,
  25 DDIM steps, the model's default guidance).

``--run`` measures a training run's learning curve instead of one model: each of its kept
checkpoints at a multiple of ``--every`` (``keep_every`` in the run's config keeps them) is
exported with ``--weights`` to a temporary directory and measured the same way. With
``--json``, the checkpoints already measured in that file with the same settings are
reused, so a curve measured while its run was at step 8000 is extended, not redone, once
the run has gone on (``--model`` entries are always measured afresh); ``--plot`` draws the
error at each noise level (and top-5, where measured) against the steps, one line per run.

The defaults take about 4 minutes per width-48 model on one core. One standard error of
top-5 at 120 prompts is about 4 points near 60 %, and of pairs at 50 prompts about 3 points
near 5 %; the table in ``docs/results.md`` repeats the baseline to show the run-to-run noise.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bcosdiff.data.emoji_scenes import HELD_OUT_EMOJI_TEMPLATES, EmojiScenes
from bcosdiff.evaluation.emoji import (
    EmojiGallery,
    concept_prompts,
    generate_images,
    load_emoji_features,
    scene_prompts,
    scene_report,
    single_report,
)
from bcosdiff.evaluation.validation import VALIDATION_SEED, validation_loss
from bcosdiff.modeldir import atomic_write, read_config
from bcosdiff.pipeline import load_pipeline, resolve_model
from bcosdiff.training import export_checkpoint
from bcosdiff.training.checkpoint import complete_checkpoints


def training_steps(config: dict) -> int:
    """All the steps behind a model: its own run's and those of what it started from."""
    training = config.get("training", {})
    return int(training.get("steps", 0)) + int(training.get("init", {}).get("total_steps", 0))


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def run_milestones(run: Path, every: int) -> list[tuple[int, Path]]:
    """``(step, checkpoint)`` of the run's complete checkpoints at multiples of ``every``."""
    found = complete_checkpoints(run / "checkpoints")
    if not found:
        raise SystemExit(f"{run}: no checkpoints")
    return [(step, path) for step, path in found if step % every == 0]


def plot_curves(report: dict, path: str) -> None:
    """Error per noise level (and top-5 where measured) against steps, a line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: dict[str, list[tuple[int, dict]]] = {}
    for entry in report.values():
        if "run" in entry:
            runs.setdefault(entry["run"], []).append((entry["checkpoint_step"], entry))
    levels = sorted({int(t) for e in report.values() for t in e["validation_mse_per_t"]})
    with_top5 = any(e.get("top5") is not None for e in report.values())
    panels = len(levels) + int(with_top5)
    fig, axes = plt.subplots(1, panels, figsize=(3.0 * panels, 3.0), squeeze=False)
    for run, points in sorted(runs.items()):
        points.sort(key=lambda point: point[0])
        steps = [step for step, _ in points]
        colour = None
        for ax, t in zip(axes[0], levels, strict=False):
            errors = [_per_t(e)[t] for _, e in points]
            (line,) = ax.plot(steps, errors, marker="o", markersize=3, label=Path(run).name)
            colour = line.get_color()
            ax.set_title(f"validation MSE, t = {t}", fontsize=9)
        top5 = [(s, e["top5"]) for s, e in points if e.get("top5") is not None]
        if top5:
            axes[0][-1].plot(*zip(*top5, strict=True), marker="o", markersize=3, color=colour)
        if with_top5:
            axes[0][-1].set_title("top-5 recognised", fontsize=9)
    for ax in axes[0]:
        ax.set_xlabel("training step", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _per_t(entry: dict) -> dict[int, float]:
    """The per-level errors with integer keys (JSON turns them into strings)."""
    return {int(t): float(v) for t, v in entry["validation_mse_per_t"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="an emoji import (bcosdiff data emoji)")
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--run", action="append", default=[], help="a training run's directory")
    parser.add_argument("--every", type=int, default=1000, help="with --run: milestone step")
    parser.add_argument("--weights", choices=("ema", "model"), default="ema")
    parser.add_argument("--plot", help="with --run: write the learning curves to this PNG")
    parser.add_argument("--prompts", type=int, default=120, help="0: no one-emoji prompts")
    parser.add_argument("--two-object", type=int, default=50, help="0: no two-emoji prompts")
    parser.add_argument("--val-scenes", type=int, default=256)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--json", help="also write every number to this file")
    args = parser.parse_args()
    if not args.model and not args.run:
        parser.error("give at least one --model or --run")
    if args.every < 1:
        parser.error("--every must be >= 1")

    net = load_emoji_features()
    gallery = EmojiGallery(net, EmojiScenes(args.data))
    if [c.key for c in gallery.scenes.concepts] != net.concept_keys:
        raise SystemExit("the feature extractor was trained on another concept subset")
    held_out = EmojiScenes(args.data, seed=VALIDATION_SEED, templates=HELD_OUT_EMOJI_TEMPLATES)
    singles = concept_prompts(gallery, args.prompts, 0)
    pairs = scene_prompts(gallery, args.two_object, 0)
    print(
        "| model | U-Net | steps in all | validation MSE | top-1 | top-5 | pairs both "
        "(first / second) | s |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    report = (
        json.loads(Path(args.json).read_text()) if args.json and Path(args.json).exists() else {}
    )

    settings = {
        "prompts": args.prompts,
        "two_object": args.two_object,
        "val_scenes": args.val_scenes,
        "steps": args.steps,
    }

    def measure(model: str, key: str, extra: dict) -> None:
        start = time.perf_counter()
        pipe = load_pipeline(model)
        guidance = pipe.guidance
        loss = validation_loss(pipe, held_out, args.val_scenes)
        top1 = top5 = None
        if singles:
            images = generate_images(pipe, [p.prompt for p in singles], args.steps, 0, guidance)
            overall = single_report(gallery, singles, images)[0][-1]
            top1, top5 = overall.top1, overall.top5
        scene = None
        if pairs:
            scene_images = generate_images(
                pipe, [p.prompt for p in pairs], args.steps, 10_000, guidance
            )
            scene, _ = scene_report(gallery, pairs, scene_images)
        elapsed = time.perf_counter() - start
        steps = training_steps(read_config(resolve_model(model)))
        report[key] = {
            **extra,
            "settings": settings,
            "unet": pipe.unet.config.kind,
            "steps": steps,
            "guidance": guidance,
            "validation_mse": loss.mean,
            "validation_mse_per_t": loss.per_level,
            "top1": top1,
            "top5": top5,
            "pairs": asdict(scene) if scene else None,
            "seconds": elapsed,
        }
        if args.json:  # after every model, so an interrupted curve keeps what it measured
            text = json.dumps(report, indent=2)
            atomic_write(Path(args.json), lambda tmp: tmp.write_text(text, "utf-8"))

    def row(key: str) -> None:
        entry = report[key]
        scene = entry["pairs"]
        pair_cell = (
            f"{scene['both']:.0%} ({scene['first']:.0%} / {scene['second']:.0%})" if scene else "–"
        )
        print(
            f"| {key} | {entry['unet']} | {entry['steps']} | {entry['validation_mse']:.5f} | "
            f"{_pct(entry['top1'])} | {_pct(entry['top5'])} | {pair_cell} | "
            f"{entry['seconds']:.0f} |",
            flush=True,
        )

    wanted = []
    for model in args.model:
        measure(model, model, {})
        wanted.append(model)
        row(model)
    for run in map(Path, args.run):
        for step, checkpoint in run_milestones(run, args.every):
            key = f"{run}@{step} ({args.weights})"
            if report.get(key, {}).get("settings") != settings:
                with tempfile.TemporaryDirectory() as tmp:
                    out = export_checkpoint(
                        run, Path(tmp) / "model", weights=args.weights, checkpoint=checkpoint.name
                    )
                    extra = {"run": str(run), "checkpoint_step": step, "weights": args.weights}
                    measure(str(out), key, extra)
            wanted.append(key)
            row(key)
    report_now = {key: report[key] for key in wanted}
    levels = sorted({int(t) for e in report_now.values() for t in e["validation_mse_per_t"]})
    print("\nvalidation MSE per noise level (low t: the detail; high t: the layout)")
    print("| model | " + " | ".join(f"t = {t}" for t in levels) + " |")
    print("| --- |" + " ---: |" * len(levels))
    for model, entry in report_now.items():
        errors = _per_t(entry)
        print(f"| {model} | " + " | ".join(f"{errors[t]:.4f}" for t in levels) + " |")
    if args.plot:
        plot_curves(report_now, args.plot)


if __name__ == "__main__":
    main()
