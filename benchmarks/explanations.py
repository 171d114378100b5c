"""Fidelity and meaning of explanations on shapes prompts (paper §4.2; one run).

    python benchmarks/explanations.py [--model NAME_OR_DIR] [--prompts 50] [--steps 25]

* fidelity: MSE between the normalised reconstruction R_rgb/(R_rgb+R_inv) and the generated
  image, averaged over the prompts (the paper reports 0.0045 for B-cos x0);
* meaning: mean relevance of colour and shape words vs filler words (words that name no
  object in the dataset's ground truth) and their ratio;
* failure detection: prompts that add a word the model never saw to known content
  ("a red circle and a shark"): is the unknown word flagged, and are the known ones not?
"""

from __future__ import annotations

import argparse
import statistics

from bcosdiff.data import COLOURS, SHAPES, ShapesDataset
from bcosdiff.data.shapes import HELD_OUT_TEMPLATES
from bcosdiff.explain import SCORES_ONLY
from bcosdiff.pipeline import load_pipeline
from bcosdiff.service import explain_prompt

UNSEEN = ("shark", "guitar", "volcano", "umbrella", "pizza", "bicycle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument(
        "--unseen", type=int, default=18, help="prompts 'a COLOUR SHAPE and a UNSEEN-WORD'"
    )
    args = parser.parse_args()
    pipe = load_pipeline(args.model)
    dataset = ShapesDataset(size=pipe.sample_size, seed=args.seed, templates=HELD_OUT_TEMPLATES)

    mses, content, filler = [], [], []
    for index in range(args.prompts):
        sample = dataset.sample(index)
        exp = explain_prompt(
            pipe, sample.caption, steps=args.steps, seed=index, options=SCORES_ONLY
        )
        if exp.reconstruction_mse is not None:
            mses.append(exp.reconstruction_mse)
        truth = {w.lower(): k for w, k in zip(sample.words, sample.word_objects, strict=True)}
        for word in exp.words:
            if word.text in COLOURS or word.text in SHAPES:
                content.append(word.relevance)
            elif truth.get(word.text) is None and word.text.isalpha():
                filler.append(word.relevance)
    print(f"model {pipe.name}: {args.prompts} held-out shapes prompts, {args.steps} steps")
    if mses:
        print(
            f"normalised reconstruction MSE: mean {statistics.mean(mses):.5f}, "
            f"median {statistics.median(mses):.5f}, max {max(mses):.5f}"
        )
    if not content or not filler:
        print("no colour/shape or filler words to compare")
    else:
        ratio = statistics.mean(content) / statistics.mean(filler)
        print(
            f"mean relevance: colour/shape words {statistics.mean(content):.2%} "
            f"({len(content)}), filler words {statistics.mean(filler):.2%} ({len(filler)}), "
            f"ratio {ratio:.2f}x"
        )

    hits = clean = 0
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    cases = [(*combos[i % len(combos)], UNSEEN[i % len(UNSEEN)]) for i in range(args.unseen)]
    for i, (colour, shape, unseen) in enumerate(cases):
        prompt = f"a {colour} {shape} and a {unseen}"
        exp = explain_prompt(pipe, prompt, steps=args.steps, seed=i, options=SCORES_ONLY)
        flagged = set(exp.flagged_tokens)
        hits += unseen in flagged
        clean += not ({colour, shape} & flagged)
        scores = {w.text: round(w.relevance, 4) for w in exp.words}
        print(f"  {prompt!r}: flagged {sorted(flagged)}  relevance {scores}")
    print(
        f"unseen word flagged in {hits}/{len(cases)}; known words unflagged in {clean}/{len(cases)}"
    )


if __name__ == "__main__":
    main()
