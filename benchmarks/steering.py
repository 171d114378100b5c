"""Steering with a dictionary feature: how often does the feature matched to a colour turn
an object of another colour into that colour, against strength?

    python benchmarks/steering.py --model bcos-x0 --dictionary sae.safetensors \
        --interpretation interp-sae/interpretation.json [--colour red] [--strengths 0 2 4 8]

The feature is the one that ``bcosdiff sae interpret`` matched to ``colour:COLOUR`` with
the highest precision gain. Prompts ask for one object of every other colour and every
shape (held-out caption templates, prompt k with seed k). The pixel checker reads the
image: success = the object reads as COLOUR; "shape kept" = its shape is still the asked
one. One run prints every strength.
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
    parser.add_argument("--colour", default="red")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0, 1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()

    stored = load_dictionary(args.dictionary)
    readings = json.loads(Path(args.interpretation).read_text())["features"]
    matched = [r for r in readings if r["attribute"] == f"colour:{args.colour}"]
    if not matched:
        raise SystemExit(f"no feature of this dictionary tracks colour:{args.colour}")
    best = max(matched, key=lambda r: r["gain"])
    pipe = load_pipeline(args.model)
    checker = ShapeChecker(pipe.sample_size)
    others = [c for c in COLOURS if c != args.colour]
    prompts = [
        (HELD_OUT_TEMPLATES[k % len(HELD_OUT_TEMPLATES)].format(f"a big {c} {s}"), c, s)
        for k, (c, s) in enumerate(itertools.product(others, SHAPES))
    ]
    print(
        f"{pipe.name}, {stored.kind} at {stored.site}: feature {best['feature']} "
        f"(colour:{args.colour}, precision gain {best['gain']:.3f}); {len(prompts)} prompts, "
        f"{args.steps} steps"
    )
    for strength in args.strengths:
        steering = steering_from(stored, best["feature"], strength)
        turned = kept = 0
        for seed, (prompt, _, shape) in enumerate(prompts):
            image = pipe.generate(prompt, steps=args.steps, seed=seed, steering=steering)
            found = checker.detect(np.asarray(image), max_objects=1)
            turned += bool(found) and found[0].colour == args.colour
            kept += bool(found) and found[0].shape == shape
        print(
            f"strength {strength:5.1f}: reads {args.colour} {turned / len(prompts):6.1%}  "
            f"shape kept {kept / len(prompts):6.1%}"
        )


if __name__ == "__main__":
    main()
