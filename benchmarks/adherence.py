"""Prompt adherence on shapes: does the generated image show the asked colour and shape?

    python benchmarks/adherence.py --model DIR [--baseline DIR] [--steps 25] [--per-combo 4]
        [--guidance 1 --guidance 3 ...]

Prompts are built from held-out caption templates (never used for training captions), so no
prompt was seen verbatim in training: every colour × shape combination, with size words, for
single objects, plus two-object prompts whose objects differ in colour *and* shape ("a red
circle and a blue square"). Images are judged by the pixel checker
(``bcosdiff.evaluation.checker``), which is first validated on real dataset images. Each
guidance scale (default: the model's own) is scored on the same prompts and seeds; the
sampling cost is the wall time per image of that scale, measured in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import random
import time

import numpy as np

from bcosdiff.data.shapes import COLOURS, HELD_OUT_TEMPLATES, SHAPES, SIZES
from bcosdiff.evaluation import ShapeChecker, checker_accuracy
from bcosdiff.pipeline import load_pipeline
from bcosdiff.request import batch_requests


def single_prompts(per_combo: int) -> list[tuple[str, list[tuple[str, str]]]]:
    prompts = []
    for (colour, shape), k in itertools.product(
        itertools.product(COLOURS, SHAPES), range(per_combo)
    ):
        size = list(SIZES)[k % len(SIZES)]
        template = HELD_OUT_TEMPLATES[k % len(HELD_OUT_TEMPLATES)]
        prompts.append((template.format(f"a {size} {colour} {shape}"), [(colour, shape)]))
    return prompts


def two_object_prompts(count: int, seed: int = 0) -> list[tuple[str, list[tuple[str, str]]]]:
    rng = random.Random(seed)
    prompts = []
    while len(prompts) < count:
        a = (rng.choice(list(COLOURS)), rng.choice(SHAPES))
        b = (rng.choice(list(COLOURS)), rng.choice(SHAPES))
        if a[0] == b[0] or a[1] == b[1]:
            continue
        template = rng.choice(HELD_OUT_TEMPLATES)
        prompts.append((template.format(f"a {a[0]} {a[1]} and a {b[0]} {b[1]}"), [a, b]))
    return prompts


def score(pipe, checker, prompts, steps, batch, guidance=None):
    results = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        seeds = list(range(start, start + len(chunk)))
        samples = pipe.sample_batch(
            batch_requests([p for p, _ in chunk], seeds, steps=steps, guidance=guidance)
        )
        for image, (_, wanted) in zip(pipe.images(samples), chunk, strict=True):
            results.append(checker.matches(np.asarray(image), wanted))
    array = np.asarray(results, dtype=float)
    return {"colour": array[:, 0].mean(), "shape": array[:, 1].mean(), "both": array[:, 2].mean()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--baseline", default=None, help="e.g. the vanilla model")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--per-combo", type=int, default=4, help="single prompts per colour×shape")
    parser.add_argument("--two-object", type=int, default=40)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument(
        "--guidance", type=float, action="append", help="guidance scale (repeatable)"
    )
    args = parser.parse_args()

    models = {"model": load_pipeline(args.model)}
    if args.baseline:
        models["baseline"] = load_pipeline(args.baseline)
    size = models["model"].sample_size
    checker = ShapeChecker(size)
    singles = single_prompts(args.per_combo)
    pairs = two_object_prompts(args.two_object)
    single_check = checker_accuracy(checker)
    pair_check = checker_accuracy(checker, two_objects=True)
    print(f"checker on dataset images ({size}x{size}): single {single_check}  two {pair_check}")
    if single_check["both"] < 0.98:
        raise SystemExit("the checker is below 98% on dataset images; its verdicts are not trusted")
    print(
        f"{len(singles)} single-object prompts, {len(pairs)} two-object prompts, {args.steps} steps"
    )
    for name, pipe in models.items():
        for guidance in args.guidance or [pipe.guidance]:
            start = time.perf_counter()
            one = score(pipe, checker, singles, args.steps, args.batch, guidance)
            two = score(pipe, checker, pairs, args.steps, args.batch, guidance)
            elapsed = time.perf_counter() - start
            print(
                f"{name:8s} {pipe.name:24s} w={guidance:g} single: colour {one['colour']:.1%} "
                f"shape {one['shape']:.1%} "
                f"both {one['both']:.1%} | two-object both right {two['both']:.1%} "
                f"({elapsed:.0f} s, {elapsed / (len(singles) + len(pairs)):.3f} s/image)"
            )


if __name__ == "__main__":
    main()
