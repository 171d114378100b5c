"""Failure detection on emoji prompts: words that are no emoji, and asked emoji not drawn.

    python benchmarks/emoji_flags.py --data data/emoji --model bcos-emoji [--prompts 100]

Uses the model's calibrated flag rule (``bcosdiff eval flags --data ... --write``):

* **words that are no emoji**: prompts "a cat face and a zeppelin", an emoji of the concept
  subset and a noun that names no emoji at all (no word of any emoji's name or keywords in
  the whole import). Reported: the share of prompts whose non-emoji word is flagged, and
  the share of the emoji's name words flagged in the same prompts;
* **asked emoji not drawn**: held-out two-emoji prompts; the emoji ground truth
  (retrieval, :class:`~bcosdiff.evaluation.faithfulness.EmojiTruth`) says which asked emoji
  the image shows. Reported: the flag rule's true- and false-positive rates on the asked
  emoji (an emoji counts as flagged when any of its name words is), and the AUROC of its
  lowest name-word peer ratio for picking out the emoji not drawn.
"""

from __future__ import annotations

import argparse
import random

import numpy as np

from bcosdiff.data.emoji_scenes import EmojiScenes, emoji_phrase
from bcosdiff.data.images import read_metadata
from bcosdiff.evaluation.emoji import EmojiGallery, load_emoji_features
from bcosdiff.evaluation.faithfulness import EmojiTruth
from bcosdiff.evaluation.faithfulness.metrics import auroc
from bcosdiff.evaluation.faithfulness.scoring import align
from bcosdiff.explain import SCORES_ONLY
from bcosdiff.explain.tokens import peer_ratios
from bcosdiff.pipeline import load_pipeline
from bcosdiff.service import explain_prompt

# Nouns a user might type; those that occur in any emoji's name or keywords are dropped.
CANDIDATES = (
    "zeppelin",
    "harpsichord",
    "lighthouse",
    "walrus",
    "accordion",
    "cathedral",
    "toaster",
    "wheelbarrow",
    "kayak",
    "igloo",
    "chandelier",
    "stapler",
    "anvil",
    "platypus",
    "gazebo",
    "trombone",
    "hedgehog",
    "blender",
    "windmill",
    "scarecrow",
    "sundial",
    "hammock",
    "periscope",
    "cactus",
    "armadillo",
    "porcupine",
    "lantern",
    "tractor",
    "volcano",
    "iguana",
)


def non_emoji_words(root) -> list[str]:
    vocabulary = set()
    for row in read_metadata(root):
        for text in [row.get("name", ""), *row.get("keywords", [])]:
            vocabulary.update(text.lower().split())
    return [w for w in CANDIDATES if w not in vocabulary]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="bcos-emoji")
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()

    pipe = load_pipeline(args.model)
    scenes = EmojiScenes(args.data)
    words = non_emoji_words(args.data)
    print(
        f"{pipe.name}: flag ratio {pipe.explain_settings.flag_ratio:.4g} "
        f"({pipe.explain_settings.flag_signal}); "
        f"{len(words)} non-emoji words: {', '.join(words)}"
    )
    rng = random.Random(0)
    caught, concept_flags, concept_words = 0, 0, 0
    for index in range(args.prompts):
        concept = rng.choice(scenes.concepts)
        word = words[index % len(words)]
        prompt = f"{emoji_phrase(concept.name)} and {emoji_phrase(word)}"
        exp = explain_prompt(pipe, prompt, steps=args.steps, seed=index, options=SCORES_ONLY)
        caught += word in exp.flagged_tokens
        name = concept.name.split()
        concept_words += len(name)
        concept_flags += sum(w in exp.flagged_tokens for w in name)
    print(
        f"non-emoji word flagged: {caught / args.prompts:.1%} of {args.prompts} prompts; "
        f"emoji name words flagged in them: {concept_flags / concept_words:.1%} "
        f"of {concept_words}"
    )

    net = load_emoji_features()
    truth = EmojiTruth(EmojiGallery(net, scenes), seed=0, two_object_share=1.0)
    scores, missed, flagged = [], [], []
    for index in range(args.prompts):
        prompt = truth.prompt(index)
        exp = explain_prompt(
            pipe, prompt.caption, steps=args.steps, seed=index, options=SCORES_ONLY
        )
        found = truth.read(np.asarray(exp.image), prompt)
        positions = align([w.text for w in exp.words], prompt.words)
        ratio = {
            positions[exp.words.index(w)]: r
            for w, r in peer_ratios(exp.words, pipe.explain_settings.flag_signal)
        }
        for k, obj in enumerate(found):
            keys = [t for t in prompt.key_words if prompt.word_objects[t] == k and t in ratio]
            if not keys:
                continue
            scores.append(min(ratio[t] for t in keys))
            missed.append(obj is None or not obj.shown)
            flagged.append(any(prompt.words[t] in exp.flagged_tokens for t in keys))
    missed_n = sum(missed)
    tpr = sum(f for f, m in zip(flagged, missed, strict=True) if m) / max(missed_n, 1)
    fpr = sum(f for f, m in zip(flagged, missed, strict=True) if not m) / max(
        len(missed) - missed_n, 1
    )
    value = auroc(scores, missed)
    print(
        f"asked emoji not drawn: {missed_n} of {len(missed)}; flag rule TPR {tpr:.1%}, "
        f"FPR {fpr:.1%}; AUROC of the lowest name-word peer ratio "
        f"{'n/a' if value is None else f'{value:.3f}'}"
    )


if __name__ == "__main__":
    main()
