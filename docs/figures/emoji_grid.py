"""The README's grid of generated emoji (one run; writes docs/figures/emoji-grid.png).

    python docs/figures/emoji_grid.py [--model bcos-emoji] [--seed 0] [--data DIR] [--out PATH]

Each cell of the first rows is ``bcosdiff generate PROMPT -m MODEL --seed SEED`` (25 steps,
the model's default guidance) for a fixed list of everyday prompts, enlarged without
smoothing, with its prompt underneath. With ``--data`` (an emoji import) a last row adds
the first concept prompts of ``benchmarks/emoji_recognisability.py`` (random concepts,
prompt k sampled with seed k, as there), and every one-emoji cell's title carries the rank
of the asked emoji among the real emoji (the benchmark's retrieval; "top 5" means the
benchmark counts it as shown), so the figure shows typical images beside chosen ones.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import numpy as np

from bcosdiff import load_pipeline
from bcosdiff.request import batch_requests

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
COLUMNS = 6


def _gallery(data: str):
    from bcosdiff.data.emoji_scenes import EmojiScenes
    from bcosdiff.evaluation.emoji import EmojiGallery, load_emoji_features

    return EmojiGallery(load_emoji_features(), EmojiScenes(data))


def _ranks(gallery, asked: list[int | None], images) -> list[int | None]:
    """Rank (0 = best) of each cell's asked concept among the real emoji (one batched
    retrieval, as the benchmark's); None for cells that ask no single concept."""
    import torch

    pixels = torch.from_numpy(np.stack([np.array(image) for image in images])).permute(0, 3, 1, 2)
    found = gallery.retrieve(pixels)
    return [None if c is None else r.rank_of(c) for r, c in zip(found, asked, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bcos-emoji")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="an emoji import: adds random prompts and ranks")
    parser.add_argument("--out", default=str(Path(__file__).with_name("emoji-grid.png")))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pipe = load_pipeline(args.model)
    prompts, seeds = list(PROMPTS), [args.seed] * len(PROMPTS)
    gallery = _gallery(args.data) if args.data else None
    ranks = [None] * len(prompts)
    if gallery is not None:
        from bcosdiff.data.emoji_scenes import emoji_phrase
        from bcosdiff.evaluation.emoji import concept_prompts

        index = {emoji_phrase(c.name): i for i, c in enumerate(gallery.concepts)}
        asked = [index.get(p.split(",")[0]) for p in prompts]
        drawn = concept_prompts(gallery, COLUMNS)
        prompts += [p.prompt for p in drawn]
        seeds += list(range(len(drawn)))
        asked += [p.concepts[0] for p in drawn]
    images = pipe.images(pipe.sample_batch(batch_requests(prompts, seeds, steps=25)))
    if gallery is not None:
        ranks = _ranks(gallery, asked, images)
    rows = (len(prompts) + COLUMNS - 1) // COLUMNS
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(1.9 * COLUMNS, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for n, (ax, prompt, image) in enumerate(zip(axes.flat, prompts, images, strict=False)):
        ax.imshow(np.asarray(image), interpolation="nearest")
        notes = [] if n < len(PROMPTS) else [f"seed {seeds[n]}"]
        if ranks[n] is not None:
            rank = ranks[n] + 1
            notes.append(f"rank {rank}" + (" (top 5)" if rank <= 5 else ""))
        title = "\n".join([textwrap.fill(prompt, 28), ", ".join(notes)] if notes else [prompt])
        ax.set_title(title, fontsize=7, wrap=True)
    heading = f"{pipe.name}, 25 steps, guidance {pipe.guidance:g}; first rows seed {args.seed}"
    if args.data:
        heading += "; last row: random concepts of the recognisability benchmark"
    fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
