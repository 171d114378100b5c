"""The recipe proxy: rank emoji models from short runs on fixed measurements (one run, a table)

    python benchmarks/recipe_proxy.py --data data/emoji --model RUN_A/model \
        [--model RUN_B/model ...] [--prompts 120] [--two-object 50] [--val-scenes 256] \
        [--json F]

For each model (a model directory or a bundled name), with everything fixed across models:

* the validation loss: pixel MSE of the predicted clean image on 256 held-out scenes
  (data seed ``VALIDATION_SEED``, the held-out caption templates), each noised at t = 100,
  300, 500, 700 and 900 with the same noise (:mod:`bcosdiff.evaluation.validation`), overall
  and, in a second table, per noise level;
* recognisability on a fixed prompt set, as ``benchmarks/emoji_recognisability.py`` measures
  it on its full set: top-1 / top-5 of ``--prompts`` one-emoji prompts, and the share of
  ``--two-object`` two-emoji prompts with both emoji recognised (prompt k with seed k,
  25 DDIM steps, the model's default guidance).

The defaults take about 4 minutes per width-48 model on one core. One standard error of
top-5 at 120 prompts is about 4 points near 60 %, and of pairs at 50 prompts about 3 points
near 5 %; the table in ``docs/results.md`` repeats the baseline to show the run-to-run noise.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

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
from bcosdiff.modeldir import read_config
from bcosdiff.pipeline import load_pipeline, resolve_model


def training_steps(config: dict) -> int:
    """All the steps behind a model: its own run's and those of what it started from."""
    training = config.get("training", {})
    return int(training.get("steps", 0)) + int(training.get("init", {}).get("total_steps", 0))


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="an emoji import (bcosdiff data emoji)")
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--prompts", type=int, default=120, help="0: no one-emoji prompts")
    parser.add_argument("--two-object", type=int, default=50, help="0: no two-emoji prompts")
    parser.add_argument("--val-scenes", type=int, default=256)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--json", help="also write every number to this file")
    args = parser.parse_args()

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
    report = {}
    for model in args.model:
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
        pair_cell = f"{scene.both:.0%} ({scene.first:.0%} / {scene.second:.0%})" if scene else "–"
        print(
            f"| {model} | {pipe.unet.config.kind} | {steps} | {loss.mean:.5f} | "
            f"{_pct(top1)} | {_pct(top5)} | {pair_cell} | {elapsed:.0f} |",
            flush=True,
        )
        report[model] = {
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
    levels = sorted({t for entry in report.values() for t in entry["validation_mse_per_t"]})
    print("\nvalidation MSE per noise level (low t: the detail; high t: the layout)")
    print("| model | " + " | ".join(f"t = {t}" for t in levels) + " |")
    print("| --- |" + " ---: |" * len(levels))
    for model, entry in report.items():
        errors = entry["validation_mse_per_t"]
        print(f"| {model} | " + " | ".join(f"{errors[t]:.4f}" for t in levels) + " |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
