"""Composition report of one model at several guidance scales (one run, one table).

    python benchmarks/composition.py --model bcos-x0 [--guidance 1 2 3 5] [--fd-count 500]

For each guidance scale, on held-out prompts (prompt k with seed k):

* single-object colour / shape / both (every colour x shape, ``--per-combo`` each) and
  two-object prompts with distinct colours and shapes drawn right, by the pixel checker;
* token specificity of the B-cos explanation on two-object prompts (B-cos models only): the
  share of a colour or shape word's map on its own object rather than the other one;
* the shapes Fréchet distance of ``--fd-count`` generated vs real images;
* the sampling cost per image.
"""

from __future__ import annotations

import argparse
import time

from adherence import score, single_prompts, two_object_prompts

from bcosdiff.evaluation import ShapeChecker, checker_accuracy
from bcosdiff.evaluation.faithfulness import evaluate_faithfulness
from bcosdiff.evaluation.fid import frechet_distance
from bcosdiff.pipeline import load_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bcos-x0")
    parser.add_argument("--guidance", type=float, nargs="+", default=[1, 2, 3, 5])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--per-combo", type=int, default=2)
    parser.add_argument("--two-object", type=int, default=40)
    parser.add_argument("--specificity-prompts", type=int, default=24)
    parser.add_argument("--fd-count", type=int, default=500)
    parser.add_argument("--batch", type=int, default=24)
    args = parser.parse_args()

    pipe = load_pipeline(args.model)
    checker = ShapeChecker(pipe.sample_size)
    if checker_accuracy(checker)["both"] < 0.98:
        raise SystemExit("the checker is below 98% on dataset images; its verdicts are not trusted")
    singles = single_prompts(args.per_combo)
    pairs = two_object_prompts(args.two_object)
    bcos = pipe.unet.config.kind == "bcos"
    print(
        f"{pipe.name} ({pipe.unet.config.kind}), {args.steps} steps; {len(singles)} single-object "
        f"and {len(pairs)} two-object prompts; specificity on {args.specificity_prompts} "
        f"two-object prompts; Fréchet distance on {args.fd_count} images"
    )
    print(
        "| guidance | colour | shape | single both | two-object both right | token specificity "
        "| shapes Fréchet distance | s / image |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for guidance in args.guidance:
        start = time.perf_counter()
        one = score(pipe, checker, singles, args.steps, args.batch, guidance)
        two = score(pipe, checker, pairs, args.steps, args.batch, guidance)
        per_image = (time.perf_counter() - start) / (len(singles) + len(pairs))
        specificity = "n/a"
        if bcos:
            (result,) = evaluate_faithfulness(
                pipe,
                ["bcos"],
                prompts=args.specificity_prompts,
                two_object_share=1.0,
                steps=args.steps,
                guidance=guidance,
                deletion=False,
                insertion=False,
            )
            value = result.metrics.get("token_specificity")
            if value is not None:
                specificity = f"{value:.3f} ({result.counts['specificity_images']} images)"
        fd = frechet_distance(
            pipe,
            data="shapes",
            count=args.fd_count,
            steps=args.steps,
            guidance=guidance,
            batch=args.batch,
        )
        print(
            f"| {guidance:g} | {one['colour']:.1%} | {one['shape']:.1%} | {one['both']:.1%} "
            f"| {two['both']:.1%} | {specificity} | {fd.value:.1f} | {per_image:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
