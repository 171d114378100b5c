"""Faithfulness of explanation methods on shapes prompts, measured against ground truth.

Prompts come from the shapes generator with the held-out caption templates, so for every
word it is known which object it describes (or that it is filler). The model generates the
image; the pixel checker (validated on dataset images) finds the objects in it and their
pixel masks, and matches them to the asked objects. Every method then explains the *same*
generated images (same prompt, seed and steps), and is scored by:

* **localisation** — for each word that describes an object the image shows: the share of
  the positive mass of the word's heat map inside that object's mask, and the pointing game
  (does the heat map's maximum fall inside the mask dilated by one pixel);
* **relevance separation** — mean relevance of object words (colour, shape, size, position)
  over mean relevance of filler words;
* **failure detection** — an asked object is *missed* when no detected object has both its
  colour and its shape; the detector score of an object is its lowest peer ratio (colour and
  shape word, see :mod:`bcosdiff.explain.tokens`), and AUROC measures how well low scores
  pick out the missed objects (word level too: a colour or shape word is missed when its
  object's region does not show that attribute);
* **deletion** — each content word is removed from the prompt and the image regenerated with
  the same seed; Spearman's ρ between the mean absolute pixel change and the word's
  relevance, per prompt (averaged) and pooled over all words.

Methods are pluggable: a method is a callable ``method(pipe, prompt, seed, steps) ->
Attribution``, registered by name in :data:`METHODS`.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torchmetrics.functional import spearman_corrcoef
from torchmetrics.functional.classification import binary_auroc

from ..data.shapes import COLOURS, HELD_OUT_TEMPLATES, SHAPES, ShapesDataset
from ..explain.tokens import Word, is_content_word, peer_ratios
from .checker import ShapeChecker

__all__ = [
    "METHODS",
    "Attribution",
    "BcosMethod",
    "FaithfulnessResult",
    "evaluate_faithfulness",
    "faithfulness_markdown",
    "localisation",
    "register_method",
]


@dataclass
class Attribution:
    """What an explanation method says about one generated image, per prompt word."""

    image: np.ndarray  # (H, W, 3) uint8, the generated image
    words: list[str]  # prompt words in order (sub-word pieces merged)
    relevance: list[float]  # per word, >= 0
    maps: np.ndarray | None  # (len(words), H, W) signed attribution per pixel, or None


class BcosMethod:
    """The B-cos explanation of the whole sampling run (batched linear replay)."""

    name = "bcos"

    def __call__(self, pipe, prompt: str, seed: int, steps: int) -> Attribution:
        exp = pipe.explain(prompt, steps=steps, seed=seed, heatmaps=True)
        return Attribution(
            image=np.asarray(exp.image),
            words=[w.text for w in exp.words],
            relevance=[w.relevance for w in exp.words],
            maps=exp.word_heatmaps().numpy(),
        )


METHODS: dict[str, Callable[[], Callable]] = {"bcos": BcosMethod}


def register_method(name: str, factory: Callable[[], Callable]) -> None:
    """Make ``factory()`` available to :func:`evaluate_faithfulness` as ``name``."""
    METHODS[name] = factory


def localisation(heatmap: np.ndarray, mask: np.ndarray) -> tuple[float | None, bool]:
    """``(positive mass inside mask, maximum inside the one-pixel dilated mask)``.

    The mass is None when the map has no positive value."""
    positive = np.clip(heatmap, 0, None)
    total = positive.sum()
    mass = float(positive[mask].sum() / total) if total > 0 else None
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return mass, bool(grown[y, x])


def _align(words: list[str], truth_words: list[str], truth_objects: list[int | None]):
    """Object index (or None) of each method word, matching lower-cased text in order."""
    labels, cursor = [], 0
    lowered = [w.lower() for w in truth_words]
    for word in words:
        try:
            k = lowered.index(word.lower(), cursor)
        except ValueError:
            labels.append(None)
            continue
        labels.append(truth_objects[k])
        cursor = k + 1
    return labels


def _match_regions(regions, objects):
    """Per asked object, ``(detected object, mask)`` of the best distinct region, or None."""
    free = list(range(len(regions)))
    matched = []
    for obj in objects:
        if not free:
            matched.append(None)
            continue

        def agreement(i, obj=obj):
            found = regions[i][0]
            return (found.colour == obj.colour) + (found.shape == obj.shape)

        best = max(free, key=agreement)  # ties keep the larger region
        free.remove(best)
        matched.append(regions[best])
    return matched


def _without_word(caption: str, word: str, occurrence: int) -> str:
    """``caption`` with the ``occurrence``-th whole-word match of ``word`` removed."""
    matches = list(re.finditer(rf"(?<![A-Za-z]){re.escape(word)}(?![A-Za-z])", caption, re.I))
    if occurrence >= len(matches):
        return caption
    m = matches[occurrence]
    return " ".join((caption[: m.start()] + caption[m.end() :]).split())


@dataclass
class _Scores:
    mass: dict[int, list[float]] = field(default_factory=lambda: {1: [], 2: []})
    pointing: dict[int, list[bool]] = field(default_factory=lambda: {1: [], 2: []})
    object_words: list[float] = field(default_factory=list)
    filler_words: list[float] = field(default_factory=list)
    object_score: list[float] = field(default_factory=list)
    object_missed: list[bool] = field(default_factory=list)
    word_score: list[float] = field(default_factory=list)
    word_missed: list[bool] = field(default_factory=list)
    deletion_rho: list[float] = field(default_factory=list)
    deletion_pairs: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class FaithfulnessResult:
    method: str
    prompts: int
    metrics: dict[str, float | None]
    counts: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)


_ROWS = (
    ("localisation mass, one object", "localisation_mass_single", "localised_words_single"),
    ("localisation mass, two objects", "localisation_mass_two", "localised_words_two"),
    ("pointing game, one object", "pointing_single", "localised_words_single"),
    ("pointing game, two objects", "pointing_two", "localised_words_two"),
    ("object-word / filler-word relevance", "object_filler_ratio", None),
    ("failure detection AUROC, objects", "failure_auroc_objects", "objects"),
    ("failure detection AUROC, colour/shape words", "failure_auroc_words", None),
    ("deletion Spearman ρ, mean per prompt", "deletion_spearman_mean", "deletion_prompts"),
    ("deletion Spearman ρ, pooled", "deletion_spearman_pooled", "deletion_words"),
)


def faithfulness_markdown(results: list[FaithfulnessResult]) -> str:
    """One table: a row per measure, a column per method (n in parentheses)."""
    header = "| measure | " + " | ".join(r.method for r in results) + " |"
    lines = [header, "| --- |" + " ---: |" * len(results)]
    for label, key, count in _ROWS:
        cells = []
        for r in results:
            value = r.metrics[key]
            text = "n/a" if value is None else f"{value:.3f}"
            if key == "object_filler_ratio" and value is not None:
                text = f"{value:.1f}×"
            if count is not None:
                text += f" ({r.counts[count]})"
            cells.append(text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    missed = results[0].counts["objects_missed"] if results else 0
    objects = results[0].counts["objects"] if results else 0
    lines.append("")
    lines.append(f"Objects missed in the images (pixel checker): {missed} of {objects}.")
    return "\n".join(lines) + "\n"


def _mean(values) -> float | None:
    values = list(values)
    return float(statistics.mean(values)) if values else None


def _auroc(scores: list[float], missed: list[bool]) -> float | None:
    if len(set(missed)) < 2:
        return None  # needs both missed and shown cases
    finite = [s if np.isfinite(s) else 1e9 for s in scores]
    preds = torch.tensor([-s for s in finite], dtype=torch.float64)  # low ratio -> missed
    return float(binary_auroc(preds, torch.tensor(missed, dtype=torch.long)))


def _spearman(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    x = torch.tensor(xs, dtype=torch.float64)
    y = torch.tensor(ys, dtype=torch.float64)
    return float(spearman_corrcoef(x, y))


def evaluate_faithfulness(
    pipe,
    methods: Iterable[str] = ("bcos",),
    prompts: int = 24,
    two_object_share: float = 0.5,
    steps: int = 25,
    seed: int = 0,
    deletion: bool = True,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> list[FaithfulnessResult]:
    """Score each method on the same ``prompts`` generated images (see module docstring)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {sorted(METHODS)}")
    runners = {name: METHODS[name]() for name in methods}
    scores = {name: _Scores() for name in runners}
    checker = ShapeChecker(pipe.sample_size)
    dataset = ShapesDataset(
        size=pipe.sample_size,
        seed=seed,
        two_object_prob=two_object_share,
        templates=HELD_OUT_TEMPLATES,
    )
    changes: dict[tuple[str, int], float] = {}  # (edited prompt, seed) -> pixel change
    indices = list(range(prompts))
    for index in progress(indices) if progress else indices:
        sample = dataset.sample(index)
        caption, objects = sample.caption, sample.objects
        n = len(objects)
        for name, method in runners.items():  # every method explains the same image
            attribution = method(pipe, caption, index, steps)
            _score_one(scores[name], attribution, sample, checker, n)
            if deletion:
                _deletion(scores[name], attribution, caption, pipe, steps, index, changes)
    results = []
    for name, s in scores.items():
        object_mean, filler_mean = _mean(s.object_words), _mean(s.filler_words)
        pooled = list(zip(*s.deletion_pairs, strict=True)) if s.deletion_pairs else ([], [])
        metrics = {
            "localisation_mass_single": _mean(s.mass[1]),
            "localisation_mass_two": _mean(s.mass[2]),
            "pointing_single": _mean(s.pointing[1]),
            "pointing_two": _mean(s.pointing[2]),
            "object_word_relevance": object_mean,
            "filler_word_relevance": filler_mean,
            "object_filler_ratio": (object_mean / filler_mean)
            if object_mean and filler_mean
            else None,
            "failure_auroc_objects": _auroc(s.object_score, s.object_missed),
            "failure_auroc_words": _auroc(s.word_score, s.word_missed),
            "deletion_spearman_mean": _mean(s.deletion_rho),
            "deletion_spearman_pooled": _spearman(list(pooled[0]), list(pooled[1])),
        }
        counts = {
            "localised_words_single": len(s.mass[1]),
            "localised_words_two": len(s.mass[2]),
            "objects": len(s.object_missed),
            "objects_missed": sum(s.object_missed),
            "deletion_prompts": len(s.deletion_rho),
            "deletion_words": len(s.deletion_pairs),
        }
        results.append(FaithfulnessResult(name, prompts, metrics, counts))
    return results


def _score_one(s: _Scores, attribution: Attribution, sample, checker, n: int) -> None:
    labels = _align(attribution.words, sample.words, sample.word_objects)
    regions = _match_regions(checker.regions(attribution.image, max_objects=n), sample.objects)
    for j, (word, k) in enumerate(zip(attribution.words, labels, strict=True)):
        relevance = attribution.relevance[j]
        if k is None:
            if word.isalpha():
                s.filler_words.append(relevance)
            continue
        s.object_words.append(relevance)
        if attribution.maps is not None and regions[k] is not None:
            mass, hit = localisation(attribution.maps[j], regions[k][1])
            if mass is not None:
                s.mass[n].append(mass)
            s.pointing[n].append(hit)
    # Failure detection: peer ratios of the colour and shape words of each asked object.
    words = [
        Word(w, [j], r)
        for j, (w, r) in enumerate(zip(attribution.words, attribution.relevance, strict=True))
    ]
    ratio = {id(w): r for w, r in peer_ratios(words)}
    for k, obj in enumerate(sample.objects):
        found = regions[k][0] if regions[k] is not None else None
        object_ratios = []
        for j, word in enumerate(words):
            if labels[j] != k or id(word) not in ratio:
                continue
            if word.text.lower() == obj.colour and word.text.lower() in COLOURS:
                shown = found is not None and found.colour == obj.colour
            elif word.text.lower() == obj.shape and word.text.lower() in SHAPES:
                shown = found is not None and found.shape == obj.shape
            else:
                continue
            s.word_score.append(ratio[id(word)])
            s.word_missed.append(not shown)
            object_ratios.append(ratio[id(word)])
        if object_ratios:
            missed = found is None or (found.colour, found.shape) != (obj.colour, obj.shape)
            s.object_score.append(min(object_ratios))
            s.object_missed.append(missed)


def _deletion(s: _Scores, attribution: Attribution, caption: str, pipe, steps, seed, cache):
    """Remove each content word, regenerate with the same seed, compare the pixel change."""
    seen: dict[str, int] = {}
    edited, relevance = [], []
    for word, score in zip(attribution.words, attribution.relevance, strict=True):
        occurrence = seen.get(word.lower(), 0)
        seen[word.lower()] = occurrence + 1
        if not is_content_word(word):
            continue
        without = _without_word(caption, word, occurrence)
        if without != caption and without.strip():
            edited.append(without)
            relevance.append(score)
    todo = sorted({e for e in edited if (e, seed) not in cache})
    if todo:
        base = attribution.image.astype(np.float64) / 255.0
        images = pipe.images(pipe.sample_batch(todo, steps, [seed] * len(todo)))
        for prompt, image in zip(todo, images, strict=True):
            cache[prompt, seed] = float(np.abs(np.asarray(image, np.float64) / 255.0 - base).mean())
    change = [cache[e, seed] for e in edited]
    s.deletion_pairs.extend(zip(relevance, change, strict=True))
    rho = _spearman(relevance, change)
    if rho is not None:
        s.deletion_rho.append(rho)
