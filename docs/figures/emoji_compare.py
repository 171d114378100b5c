"""Emoji models side by side on the same prompts and seeds (one run; writes a PNG).

    python docs/figures/emoji_compare.py --model bcos-emoji --model vanilla-emoji \
        [--model DIR ...] [--prompt TEXT ...] [--seed 0] [--data DIR] [--out PATH]

One row per model, one column per prompt; every cell is ``bcosdiff generate PROMPT -m MODEL
--seed SEED`` (25 steps, the model's default guidance), enlarged without smoothing. The
default prompts are everyday concepts and two-emoji pairs none of the figure's models was
tuned on. With ``--data`` (an emoji import) each one-emoji cell's title carries the rank of
the asked emoji among the real emoji, and each two-emoji cell says which asked emoji the
recognisability benchmark finds in the top 5 of some region ("both", "first", "second" or
"neither"), so the figure can be read against the benchmark's numbers.
"""

from __future__ import annotations

import argparse
import textwrap

import numpy as np

from bcosdiff import load_pipeline
from bcosdiff.request import batch_requests

PROMPTS = (
    "a frog",
    "a hamburger",
    "a watermelon",
    "a doughnut",
    "a butterfly",
    "a helicopter",
    "a sailboat",
    "a cat face and a rocket",
    "a frog and a sailboat",
    "a pizza and a whale",
)


def _asked(gallery, prompt: str) -> list[int]:
    """The concept indices a prompt asks for ("a X" or "a X and a Y", a name with "and" in it
    such as "a fork and knife" read whole first); [] if any is unknown."""
    from bcosdiff.data.emoji_scenes import emoji_phrase

    index = {emoji_phrase(c.name): i for i, c in enumerate(gallery.concepts)}
    phrase = prompt.split(",")[0].strip()
    if phrase in index:
        return [index[phrase]]
    found = [index.get(p.strip()) for p in phrase.split(" and ")]
    return [] if None in found else found


def _notes(gallery, prompt: str, image) -> str:
    """The benchmark's reading of one cell: the asked emoji's rank, or which of a pair is
    found in its own region."""
    import torch

    from bcosdiff.evaluation.emoji import recognised_in_scene

    asked = _asked(gallery, prompt)
    if len(asked) == 1:
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
        rank = gallery.retrieve(pixels)[0].rank_of(asked[0]) + 1
        return f"rank {rank}" + (" (top 5)" if rank <= 5 else "")
    if len(asked) == 2:
        hits = tuple(recognised_in_scene(gallery, np.array(image), asked))
        return {(True, True): "both", (True, False): "first", (False, True): "second"}.get(
            hits, "neither"
        )
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="repeat for each row")
    parser.add_argument("--prompt", action="append", help="repeat; default: everyday concepts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="an emoji import: adds the benchmark's reading")
    parser.add_argument("--out", default="emoji-compare.png")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prompts = args.prompt or list(PROMPTS)
    gallery = None
    if args.data:
        from bcosdiff.data.emoji_scenes import EmojiScenes
        from bcosdiff.evaluation.emoji import EmojiGallery, load_emoji_features

        gallery = EmojiGallery(load_emoji_features(), EmojiScenes(args.data))
    rows = len(args.model)
    fig, axes = plt.subplots(
        rows, len(prompts), figsize=(1.6 * len(prompts), 2.0 * rows + 0.4), squeeze=False
    )
    for row, model in zip(axes, args.model, strict=True):
        pipe = load_pipeline(model)
        requests = batch_requests(prompts, [args.seed] * len(prompts), steps=25)
        images = pipe.images(pipe.sample_batch(requests))
        for column, (ax, prompt, image) in enumerate(zip(row, prompts, images, strict=True)):
            ax.imshow(np.asarray(image), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            title = textwrap.fill(prompt, 18)
            if gallery is not None and (note := _notes(gallery, prompt, image)):
                title += f"\n{note}"
            ax.set_title(title, fontsize=7)
            if column == 0:
                ax.set_ylabel(f"{pipe.name}\nguidance {pipe.guidance:g}", fontsize=7)
    fig.suptitle(f"seed {args.seed}, 25 steps", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
