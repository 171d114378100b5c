"""What a model's validation error is made of: noise left in the picture, or detail missed.

    python benchmarks/error_split.py --data data/emoji --model bcos-emoji \
        [--model vanilla-emoji ...] [--levels 100 300 500] [--scenes 256] [--block 4]

On the held-out scenes and fixed noise of the validation loss (``recipe_proxy.py``), each
level's pixel MSE is read apart (:func:`bcosdiff.evaluation.validation.error_split`):
``leak`` is the share of the noise left in the predicted picture, ``leak part`` the error it
makes; the rest is split into 4×4 block means (``low``) and what varies within a block
(``high``: edges and fine detail). The three parts add up to the MSE. ``detail`` is the
within-block energy of the predicted picture over the true one's (below 1: smoother than
the truth). One run, one table;
about a minute per model and level on one core.
"""

from __future__ import annotations

import argparse

from bcosdiff.data.emoji_scenes import HELD_OUT_EMOJI_TEMPLATES, EmojiScenes
from bcosdiff.evaluation.validation import VALIDATION_SEED, error_split
from bcosdiff.pipeline import load_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="an emoji import (bcosdiff data emoji)")
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--levels", type=int, nargs="+", default=[100, 300, 500])
    parser.add_argument("--scenes", type=int, default=256)
    parser.add_argument("--block", type=int, default=4)
    args = parser.parse_args()

    held_out = EmojiScenes(args.data, seed=VALIDATION_SEED, templates=HELD_OUT_EMOJI_TEMPLATES)
    print("| model | t | MSE | noise in x_t | leak | leak part | low | high | detail |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for model in args.model:
        pipe = load_pipeline(model)
        for part in error_split(pipe, held_out, args.scenes, tuple(args.levels), block=args.block):
            print(
                f"| {model} | {part.level} | {part.mse:.5f} | {part.noise:.4f} | "
                f"{part.leak:+.3f} | {part.leak_part:.5f} | {part.low:.5f} | {part.high:.5f} | "
                f"{part.detail:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
