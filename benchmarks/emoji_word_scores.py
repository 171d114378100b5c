"""Which word score tells a word that names no emoji from the emoji names of the same prompt?

    python benchmarks/emoji_word_scores.py --data data/emoji --model bcos-emoji [--pairs 30]

For pair k: a random emoji of the concept subset, then "a <emoji> and a <noun>" with a noun
that names no emoji (``benchmarks/emoji_flags.py``) and "a <emoji> and a <other emoji>",
both with seed k. Each run's relevance is computed once by a vector-Jacobian product of the
summed output in explanation mode (eq. 8: ``g = ∂Σ x_0 / ∂x``, a token's total is
``g_i · x_i``). Because the run is linear in the token states, a token's total splits
exactly over any additive split of its state, and three scores are compared:

* ``relevance``: the whole token state (word piece + position embedding), as eq. 8;
* ``word``: the word piece's embedding alone, without the position embedding that every
  token at that place shares whatever the word;
* ``word - vocabulary mean``: the word piece minus the mean embedding of the pieces of the
  emoji names and keywords, i.e. what sets the word apart from the words trained on.

Each score is read two ways: per content word, as the flag rule does (its peer ratio, the
word's score over the median of the prompt's other content words), and per asked object
(the second phrase's summed content-word score over the first's). Reported per score: the
AUROC for picking out the words that name no emoji (low ratio = no emoji), and the share of
them caught at the thresholds that flag 1 %, 5 % and 10 % of the emoji words or phrases.
Subword models only (the split needs the position table).
"""

from __future__ import annotations

import argparse
import random

import torch
from emoji_flags import non_emoji_words

from bcosdiff.bcos import explanation_mode
from bcosdiff.data.emoji_scenes import EmojiScenes, emoji_phrase
from bcosdiff.evaluation.faithfulness.metrics import auroc
from bcosdiff.explain.tokens import Word, group_words, is_content_word, peer_ratios
from bcosdiff.explain.trajectory import RunSources, run_trajectory
from bcosdiff.pipeline import load_pipeline

SCORES = ("relevance", "word", "word - vocabulary mean")


def vocabulary_mean(pipe, scenes: EmojiScenes) -> torch.Tensor:
    """Mean embedding of the word pieces of every emoji name and keyword."""
    words = set()
    for concept in scenes.concepts:
        words.update(concept.name.split())
        for keyword in concept.keywords:
            words.update(keyword.split())
    ids = set()
    for word in words:
        ids.update(pipe.text.tokenizer(word, add_special_tokens=False)["input_ids"])
    return pipe.text.word_table[sorted(ids)].float().mean(0)


def word_scores(pipe, prompt: str, seed: int, steps: int, mean: torch.Tensor) -> dict:
    """``{score: [(word, |share|), …]}`` over the prompt's words for each of :data:`SCORES`."""
    cond = pipe.encode([prompt])
    context = cond.embeddings
    attended = cond.mask[..., None].float()
    position = pipe.text.position_table[: context.shape[1]][None].float() * attended
    word = context - position
    sources = RunSources.for_run(pipe.unet, pipe.process, context, pipe.initial_noise(seed), steps)
    leaf = context.clone().requires_grad_(True)
    with explanation_mode(pipe.unet), torch.enable_grad():
        out = run_trajectory(
            pipe.unet,
            pipe.process,
            RunSources(leaf, sources.x_T, sources.time_features, sources.mean),
            steps=steps,
            context_mask=cond.mask,
            guidance=pipe.guidance,
            checkpoint_steps=True,
        )
        (grad,) = torch.autograd.grad(out.sum(), leaf)
    totals = (grad * context).sum(-1)[0]
    parts = {
        "relevance": totals,
        "word": (grad * word).sum(-1)[0],
        "word - vocabulary mean": (grad * (word - mean * attended)).sum(-1)[0],
    }
    norm = totals.abs().sum()
    tokens = cond.prompt_tokens(0)
    result = {}
    for name, values in parts.items():
        shares = [float(values[i] / norm) for i, _ in tokens]
        grouped = group_words([(k, t) for k, (_, t) in enumerate(tokens)], shares)
        result[name] = [(w.text, abs(w.relevance)) for w in grouped]
    return result


def word_ratios(words: list[tuple[str, float]]) -> list[float]:
    """Peer ratio of each content word (the flag rule's, :func:`peer_ratios`), in prompt order."""
    scored = [Word(text, [], score) for text, score in words]
    return [ratio for _, ratio in peer_ratios(scored, "relevance")]


def phrase_scores(words: list[tuple[str, float]]) -> tuple[float, float]:
    """Summed content-word score of the phrase before "and" and of the one after it."""
    split = [text for text, _ in words].index("and")
    first = sum(s for t, s in words[:split] if is_content_word(t))
    second = sum(s for t, s in words[split + 1 :] if is_content_word(t))
    return first, second


def caught(positives: list[float], negatives: list[float], rate: float) -> float:
    """Share of ``positives`` below the threshold that flags ``rate`` of ``negatives``."""
    ordered = sorted(negatives)
    threshold = ordered[int(rate * len(ordered))]
    return sum(p < threshold for p in positives) / len(positives)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="bcos-emoji")
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()

    pipe = load_pipeline(args.model)
    if pipe.text.config.mode != "subword":
        parser.error("the word/position split needs a subword text model")
    scenes = EmojiScenes(args.data)
    nouns = non_emoji_words(args.data)
    mean = vocabulary_mean(pipe, scenes)
    rng = random.Random(0)
    words = {name: ([], []) for name in SCORES}  # (no-emoji words, emoji words)
    phrases = {name: ([], []) for name in SCORES}
    for index in range(args.pairs):
        first = emoji_phrase(rng.choice(scenes.concepts).name)
        other = emoji_phrase(rng.choice(scenes.concepts).name)
        noun = emoji_phrase(nouns[index % len(nouns)])
        for second, is_noun in ((noun, True), (other, False)):
            scores = word_scores(pipe, f"{first} and {second}", index, args.steps, mean)
            for name, listed in scores.items():
                ratios = word_ratios(listed)
                a, b = phrase_scores(listed)
                if is_noun:
                    words[name][0].append(ratios[-1])
                    words[name][1].extend(ratios[:-1])
                    phrases[name][0].append(b / a)
                else:
                    words[name][1].extend(ratios)
                    phrases[name][1].extend([b / a, a / b])
    print(f"{pipe.name}: {args.pairs} pairs, {args.steps} steps, guidance {pipe.guidance:g}")
    print("| score | read per | AUROC | caught at 1 % / 5 % / 10 % of emoji flagged |")
    print("| --- | --- | ---: | ---: |")
    for name in SCORES:
        for unit, (positives, negatives) in (("word", words[name]), ("object", phrases[name])):
            value = auroc(positives + negatives, [True] * len(positives) + [False] * len(negatives))
            rates = " / ".join(f"{caught(positives, negatives, r):.0%}" for r in (0.01, 0.05, 0.1))
            print(f"| {name} | {unit} | {value:.3f} | {rates} |")
    print(
        f"({len(words['relevance'][0])} no-emoji words, {len(words['relevance'][1])} emoji words)"
    )


if __name__ == "__main__":
    main()
