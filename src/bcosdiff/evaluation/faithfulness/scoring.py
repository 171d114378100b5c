"""Scoring one method's attribution of one generated image against the ground truth."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from ...explain.tokens import Word, is_content_word, peer_ratios
from .metrics import localisation, specificity
from .truth import FoundObject, TruthPrompt

__all__ = ["Attribution", "Tally", "align", "score_image", "to_attribution"]


@dataclass
class Attribution:
    """What an explanation method says about one generated image, per prompt word."""

    image: np.ndarray  # (H, W, 3) uint8, the generated image
    words: list[str]  # prompt words in order (sub-word pieces merged)
    relevance: list[float] | None  # per word, >= 0; None for methods without word scores
    maps: np.ndarray | None  # (len(words), H, W) signed attribution per pixel, or None
    per_word: bool = True  # False: one image-level map repeated for every word
    saliency: np.ndarray | None = None  # (H, W) the image-level map (insertion / deletion)


def to_attribution(exp) -> Attribution:
    """The benchmark's view of an :class:`~bcosdiff.explain.Explanation`."""
    maps = exp.word_heatmaps().numpy() if exp.heatmaps is not None else None
    saliency = None if exp.saliency is None else exp.saliency.numpy()
    if saliency is None and maps is not None:
        content = [k for k, w in enumerate(exp.words) if is_content_word(w.text)]
        rows = maps[content] if content else maps
        saliency = np.clip(rows, 0, None).sum(0)
    return Attribution(
        image=np.asarray(exp.image),
        words=[w.text for w in exp.words],
        relevance=None if exp.relevance is None else [w.relevance for w in exp.words],
        maps=maps,
        per_word=exp.saliency is None,
        saliency=saliency,
    )


class Tally:
    """Per-method lists of measurements (``values[name]``) and counters (``counts[name]``)."""

    def __init__(self):
        self.values: dict[str, list] = defaultdict(list)
        self.counts: Counter = Counter()

    def add(self, name: str, value) -> None:
        self.values[name].append(value)


def align(words: list[str], truth_words: list[str]) -> list[int | None]:
    """Index of each method word among the ground-truth words (lower-cased text, in order),
    or None for a word the ground truth does not have."""
    indices, cursor = [], 0
    lowered = [w.lower() for w in truth_words]
    for word in words:
        try:
            k = lowered.index(word.lower(), cursor)
        except ValueError:
            indices.append(None)
            continue
        indices.append(k)
        cursor = k + 1
    return indices


def score_image(
    tally: Tally, attribution: Attribution, prompt: TruthPrompt, found: list[FoundObject | None]
) -> None:
    """Localisation, specificity, relevance separation and failure-detection scores of one
    image (the measures of :mod:`bcosdiff.evaluation.faithfulness`)."""
    truth = align(attribution.words, prompt.words)
    labels = [None if t is None else prompt.word_objects[t] for t in truth]
    n = prompt.objects
    size = "single" if n == 1 else "two"
    both_found = n == 2 and all(f is not None for f in found)
    both_right = both_found and all(f.shown for f in found)
    per_word = attribution.maps is not None and attribution.per_word
    if both_found and per_word:
        tally.counts["specificity_images"] += 1
        tally.counts["specificity_images_exact"] += both_right
    for j, (word, k) in enumerate(zip(attribution.words, labels, strict=True)):
        relevance = None if attribution.relevance is None else attribution.relevance[j]
        magnitude = float(np.abs(attribution.maps[j]).sum()) if per_word else None
        kind = "filler" if k is None else "object"
        if k is None and not word.isalpha():
            continue  # punctuation is neither
        if relevance is not None:
            tally.add(f"relevance_{kind}", relevance)
        if magnitude is not None:
            tally.add(f"map_size_{kind}", magnitude)
        if k is None or attribution.maps is None or found[k] is None:
            continue
        mass, hit = localisation(attribution.maps[j], found[k].mask)
        if mass is not None:
            tally.add(f"mass_{size}", mass)
        tally.add(f"pointing_{size}", hit)
        if n == 1 and truth[j] in prompt.key_words:
            if mass is not None:
                tally.add("mass_key", mass)
            tally.add("pointing_key", hit)
        if both_found and per_word:
            share = specificity(attribution.maps[j], found[k].mask, found[1 - k].mask)
            if share is not None:
                tally.add("specificity", share)
                if both_right:
                    tally.add("specificity_exact", share)
    _failure_scores(tally, attribution, truth, labels, prompt, found)


def _failure_scores(tally, attribution, truth, labels, prompt, found) -> None:
    """Peer ratios (:func:`~bcosdiff.explain.tokens.peer_ratios`) of the key words of each
    asked object, from the word relevance and from each word's positive map mass, beside
    whether the image shows the object and each key word's attribute."""
    signals = {}
    if attribution.relevance is not None:
        signals[""] = attribution.relevance
    if attribution.maps is not None and attribution.per_word:
        signals["_maps"] = [float(np.clip(m, 0, None).sum()) for m in attribution.maps]
    # Which words have a peer ratio at all does not depend on the scores (content words of
    # prompts with at least two of them): equal scores find them for every method alike.
    eligible = {j for j, _ in _ratios(attribution.words, [1.0] * len(attribution.words))}
    ratios = {suffix: dict(_ratios(attribution.words, s)) for suffix, s in signals.items()}
    for k in range(prompt.objects):
        keys = [j for j in sorted(eligible) if labels[j] == k and truth[j] in prompt.key_words]
        if not keys:
            continue
        obj = found[k]
        for j in keys:
            shown = obj is not None and obj.words_shown.get(truth[j], False)
            tally.add("word_missed", not shown)
        tally.add("object_missed", obj is None or not obj.shown)
        for suffix, ratio in ratios.items():
            for j in keys:
                tally.add(f"word_score{suffix}", ratio[j])
            tally.add(f"object_score{suffix}", min(ratio[j] for j in keys))


def _ratios(texts: list[str], scores: list[float]) -> list[tuple[int, float]]:
    words = [Word(w, [j], s) for j, (w, s) in enumerate(zip(texts, scores, strict=True))]
    return [(word.positions[0], ratio) for word, ratio in peer_ratios(words)]
