"""Steering with a dictionary feature: how often does the feature matched to a colour (or a
shape) turn an object of another colour (shape) into that one, against strength?

    python benchmarks/steering.py --model bcos-x0 --dictionary sae.safetensors \
        --interpretation interp-sae/interpretation.json [--attribute colour:red] \
        [--strengths 0 2 4 8]

The feature is the one that ``bcosdiff sae interpret`` matched to the attribute with the
highest precision gain. Prompts ask for one big object of every other value of the attribute
(every colour for a shape, every shape for a colour; held-out caption templates, prompt k with
seed k). The pixel checker reads the image: success = the object reads as the attribute's
value; "kept" = the other property is still the asked one. One run prints every strength.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from bcosdiff.data.shapes import COLOURS, HELD_OUT_TEMPLATES, SHAPES
from bcosdiff.dictionary.store import load_dictionary
from bcosdiff.dictionary.workflow import steering_from
from bcosdiff.evaluation import ShapeChecker
from bcosdiff.pipeline import load_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bcos-x0")
    parser.add_argument("--dictionary", required=True)
    parser.add_argument("--interpretation", required=True)
    parser.add_argument("--attribute", default="colour:red", help="colour:NAME or shape:NAME")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0, 1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()

    kind, _, value = args.attribute.partition(":")
    if kind not in ("colour", "shape") or value not in (COLOURS if kind == "colour" else SHAPES):
        raise SystemExit(f"--attribute must be colour:NAME or shape:NAME, got {args.attribute}")
    stored = load_dictionary(args.dictionary)
    readings = json.loads(Path(args.interpretation).read_text())["features"]
    matched = [r for r in readings if r["attribute"] == args.attribute]
    if not matched:
        raise SystemExit(f"no feature of this dictionary tracks {args.attribute}")
    best = max(matched, key=lambda r: r["gain"])
    pipe = load_pipeline(args.model)
    checker = ShapeChecker(pipe.sample_size)
    if kind == "colour":
        pairs = itertools.product([c for c in COLOURS if c != value], SHAPES)
    else:
        pairs = itertools.product(COLOURS, [s for s in SHAPES if s != value])
    prompts = [
        (HELD_OUT_TEMPLATES[k % len(HELD_OUT_TEMPLATES)].format(f"a big {c} {s}"), c, s)
        for k, (c, s) in enumerate(pairs)
    ]
    print(
        f"{pipe.name}, {stored.kind} at {stored.site}: feature {best['feature']} "
        f"({args.attribute}, precision gain {best['gain']:.3f}); {len(prompts)} prompts, "
        f"{args.steps} steps"
    )
    for strength in args.strengths:
        steering = steering_from(stored, best["feature"], strength)
        turned = kept = 0
        for seed, (prompt, colour, shape) in enumerate(prompts):
            image = pipe.generate(prompt, steps=args.steps, seed=seed, steering=steering)
            found = checker.detect(np.asarray(image), max_objects=1)
            if not found:
                continue
            got = found[0].colour if kind == "colour" else found[0].shape
            other, asked = (
                (found[0].shape, shape) if kind == "colour" else (found[0].colour, colour)
            )
            turned += got == value
            kept += other == asked
        print(
            f"strength {strength:5.1f}: reads {value} {turned / len(prompts):6.1%}  "
            f"{'shape' if kind == 'colour' else 'colour'} kept {kept / len(prompts):6.1%}"
        )


if __name__ == "__main__":
    main()
