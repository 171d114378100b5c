"""The README's grid of generated emoji (one run; writes docs/figures/emoji-grid.png).

    python docs/figures/emoji_grid.py [--model bcos-emoji] [--seed 0] [--out PATH]

Each cell is ``bcosdiff generate PROMPT -m MODEL --seed SEED`` (25 steps, the model's
default guidance), enlarged 4× without smoothing, with its prompt underneath.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bcosdiff import load_pipeline

PROMPTS = (
    "a cat face",
    "a rocket",
    "a red apple",
    "a penguin",
    "a pizza",
    "a bus",
    "a sunflower",
    "a whale, noto style",
    "a strawberry, fluent style",
    "a fox, openmoji style",
    "a volcano, twemoji style",
    "a cat face and a rocket",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bcos-emoji")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("emoji-grid.png")))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pipe = load_pipeline(args.model)
    samples = pipe.sample_batch(list(PROMPTS), 25, [args.seed] * len(PROMPTS))
    images = pipe.images(samples)
    cols = 6
    rows = (len(PROMPTS) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, prompt, image in zip(axes.flat, PROMPTS, images, strict=False):
        ax.imshow(np.asarray(image), interpolation="nearest")
        ax.set_title(prompt, fontsize=8, wrap=True)
    fig.suptitle(f"{pipe.name}, seed {args.seed}, 25 steps, guidance {pipe.guidance:g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
