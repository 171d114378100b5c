"""Faithfulness of explanation methods on shapes prompts, measured against ground truth.

Prompts come from the shapes generator with the held-out caption templates, so for every
word it is known which object it describes (or that it is filler). The model generates the
image; the pixel checker (validated on dataset images) finds the objects in it and their
pixel masks, and matches them to the asked objects. Every method then explains the *same*
generated images (same prompt, seed and steps), and is scored by:

* **localisation** — for each word that describes an object the image shows: the share of
  the positive mass of the word's heat map inside that object's mask, and the pointing game
  (does the heat map's maximum fall inside the mask dilated by one pixel); reported for all
  object words and for colour and shape words alone;
* **token specificity** — on two-object images in which the checker finds a distinct region
  for each asked object: for every word of one object, the share of its map's positive mass
  on its own object's region out of its mass on both regions (0.5: the map does not tell the
  objects apart). Reported as the mean share, the fraction of words above 0.5 and the number
  of images; also on the subset of images that show both objects exactly right;
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

* **insertion / deletion AUC** — the games of :mod:`bcosdiff.evaluation.insertion` on one
  step of the run, with the method's image-level map (its own, or the sum of the positive
  parts of the content words' maps).

Every image is generated once (:meth:`~bcosdiff.pipeline.Pipeline.run`) and the same run
is handed to every method (:mod:`bcosdiff.explain.methods`); the benchmark checks that each
method's explanation shows that very image. A method gets only the metrics it supports:
relevance-based ones need word scores, token specificity and map-based failure detection
need one map per word. The cost of each method per image is measured in the same run: U-Net
evaluations (batch rows seen by the network's first layer) and
wall time relative to generating the image.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torchmetrics.functional import spearman_corrcoef
from torchmetrics.functional.classification import binary_auroc

from ..data.shapes import COLOURS, HELD_OUT_TEMPLATES, SHAPES, ShapesDataset
from ..explain.methods import METHODS, get_method
from ..explain.tokens import Word, is_content_word, peer_ratios
from .checker import ShapeChecker

__all__ = [
    "Attribution",
    "FaithfulnessResult",
    "evaluate_faithfulness",
    "faithfulness_markdown",
    "localisation",
    "to_attribution",
]


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


def specificity(heatmap: np.ndarray, own: np.ndarray, other: np.ndarray) -> float | None:
    """Share of the map's positive mass on ``own`` out of its mass on ``own`` and ``other``
    (None when the map has no positive mass on either)."""
    positive = np.clip(heatmap, 0, None)
    mine, theirs = float(positive[own].sum()), float(positive[other].sum())
    return mine / (mine + theirs) if mine + theirs > 0 else None


@dataclass
class _Scores:
    mass: dict[int, list[float]] = field(default_factory=lambda: {1: [], 2: []})
    pointing: dict[int, list[bool]] = field(default_factory=lambda: {1: [], 2: []})
    colour_shape_mass: list[float] = field(default_factory=list)  # one-object prompts
    colour_shape_pointing: list[bool] = field(default_factory=list)
    specificity: list[float] = field(default_factory=list)
    specificity_exact: list[float] = field(default_factory=list)
    specificity_images: int = 0
    specificity_images_exact: int = 0
    object_words: list[float] = field(default_factory=list)
    filler_words: list[float] = field(default_factory=list)
    object_map_size: list[float] = field(default_factory=list)  # Σ|map| per word
    filler_map_size: list[float] = field(default_factory=list)
    object_score: list[float] = field(default_factory=list)
    object_missed: list[bool] = field(default_factory=list)
    word_score: list[float] = field(default_factory=list)
    word_missed: list[bool] = field(default_factory=list)
    # The same detector with each word's positive map mass in place of its relevance.
    object_score_maps: list[float] = field(default_factory=list)
    word_score_maps: list[float] = field(default_factory=list)
    deletion_rho: list[float] = field(default_factory=list)
    deletion_pairs: list[tuple[float, float]] = field(default_factory=list)
    insertion_auc: list[float] = field(default_factory=list)
    deletion_auc: list[float] = field(default_factory=list)
    model_rows: list[int] = field(default_factory=list)  # U-Net rows per image
    time_ratio: list[float] = field(default_factory=list)  # method time / generation time


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
    (
        "localisation mass, colour/shape words, one object",
        "localisation_mass_colour_shape",
        "localised_colour_shape_words",
    ),
    (
        "pointing game, colour/shape words, one object",
        "pointing_colour_shape",
        "localised_colour_shape_words",
    ),
    (
        "token specificity, mean share",
        "token_specificity",
        "{specificity_images} images, {specificity_words} words",
    ),
    ("token specificity, share > 0.5", "token_specificity_above_half", None),
    (
        "token specificity, both objects right",
        "token_specificity_exact",
        "{specificity_images_exact} images",
    ),
    ("object-word / filler-word relevance", "object_filler_ratio", None),
    ("failure detection AUROC, objects", "failure_auroc_objects", "objects"),
    ("failure detection AUROC, colour/shape words", "failure_auroc_words", None),
    ("object-word / filler-word map magnitude", "object_filler_map_ratio", None),
    ("failure AUROC from map mass, objects", "failure_auroc_objects_maps", None),
    ("failure AUROC from map mass, colour/shape words", "failure_auroc_words_maps", None),
    ("deletion Spearman ρ, mean per prompt", "deletion_spearman_mean", "deletion_prompts"),
    ("deletion Spearman ρ, pooled", "deletion_spearman_pooled", "deletion_words"),
    ("insertion AUC (higher is better)", "insertion_auc", None),
    ("deletion AUC (lower is better)", "deletion_auc", None),
    ("cost: U-Net rows per image", "cost_model_rows", None),
    ("cost: wall time / generation", "cost_time_ratio", None),
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
            if key.startswith("object_filler") and value is not None:
                text = f"{value:.1f}×"
            elif key == "cost_model_rows" and value is not None:
                text = f"{value:.0f}"
            elif key == "cost_time_ratio" and value is not None:
                text = f"{value:.2f}×"
            if count is not None:
                text += f" ({count.format(**r.counts) if '{' in count else r.counts[count]})"
            cells.append(text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    missed = results[0].counts["objects_missed"] if results else 0
    objects = results[0].counts["objects"] if results else 0
    lines.append("")
    lines.append(
        "Numbers in parentheses: scored words or objects; token specificity is measured on "
        "two-object images in which the checker found a region for each asked object."
    )
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
    insertion: bool = True,
) -> list[FaithfulnessResult]:
    """Score each method on the same ``prompts`` generated images (see module docstring);
    ``insertion`` runs the insertion / deletion games."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {sorted(METHODS)}")
    runners = {name: get_method(name)(pipe) for name in methods}
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
        start = time.perf_counter()
        run = pipe.run(caption, steps=steps, seed=index)
        generation = time.perf_counter() - start
        image = run.image_array()
        for name, method in runners.items():  # every method explains the same run
            with _counting_rows(pipe) as rows:
                start = time.perf_counter()
                result = method.attribute(run)
                elapsed = time.perf_counter() - start
            attribution = result if isinstance(result, Attribution) else to_attribution(result)
            if not np.array_equal(attribution.image, image):
                raise RuntimeError(f"method {name!r} explained a different image than generated")
            s = scores[name]
            s.model_rows.append(rows[0])
            s.time_ratio.append(elapsed / max(generation, 1e-9))
            _score_one(s, attribution, sample, checker, n)
            if deletion and attribution.relevance is not None:
                _deletion(s, attribution, caption, pipe, steps, index, changes)
            if insertion and attribution.saliency is not None:
                from .insertion import insertion_deletion

                auc_in, auc_del = insertion_deletion(
                    pipe, run, torch.from_numpy(attribution.saliency)
                )
                s.insertion_auc.append(auc_in)
                s.deletion_auc.append(auc_del)
    results = []
    for name, s in scores.items():
        object_mean, filler_mean = _mean(s.object_words), _mean(s.filler_words)
        object_size, filler_size = _mean(s.object_map_size), _mean(s.filler_map_size)
        pooled = list(zip(*s.deletion_pairs, strict=True)) if s.deletion_pairs else ([], [])
        metrics = {
            "localisation_mass_single": _mean(s.mass[1]),
            "localisation_mass_two": _mean(s.mass[2]),
            "pointing_single": _mean(s.pointing[1]),
            "pointing_two": _mean(s.pointing[2]),
            "localisation_mass_colour_shape": _mean(s.colour_shape_mass),
            "pointing_colour_shape": _mean(s.colour_shape_pointing),
            "token_specificity": _mean(s.specificity),
            "token_specificity_above_half": _mean(v > 0.5 for v in s.specificity),
            "token_specificity_exact": _mean(s.specificity_exact),
            "object_word_relevance": object_mean,
            "filler_word_relevance": filler_mean,
            "object_filler_ratio": (object_mean / filler_mean)
            if object_mean and filler_mean
            else None,
            "failure_auroc_objects": _auroc(s.object_score, s.object_missed)
            if s.object_score
            else None,
            "failure_auroc_words": _auroc(s.word_score, s.word_missed) if s.word_score else None,
            "object_filler_map_ratio": (object_size / filler_size)
            if object_size and filler_size
            else None,
            "failure_auroc_objects_maps": _auroc(s.object_score_maps, s.object_missed)
            if s.object_score_maps
            else None,
            "failure_auroc_words_maps": _auroc(s.word_score_maps, s.word_missed)
            if s.word_score_maps
            else None,
            "deletion_spearman_mean": _mean(s.deletion_rho),
            "deletion_spearman_pooled": _spearman(list(pooled[0]), list(pooled[1])),
            "insertion_auc": _mean(s.insertion_auc),
            "deletion_auc": _mean(s.deletion_auc),
            "cost_model_rows": _mean(s.model_rows),
            "cost_time_ratio": _mean(s.time_ratio),
        }
        counts = {
            "localised_words_single": len(s.mass[1]),
            "localised_words_two": len(s.mass[2]),
            "localised_colour_shape_words": len(s.colour_shape_pointing),
            "specificity_words": len(s.specificity),
            "specificity_images": s.specificity_images,
            "specificity_images_exact": s.specificity_images_exact,
            "objects": len(s.object_missed),
            "objects_missed": sum(s.object_missed),
            "deletion_prompts": len(s.deletion_rho),
            "deletion_words": len(s.deletion_pairs),
        }
        results.append(FaithfulnessResult(name, prompts, metrics, counts))
    return results


@contextmanager
def _counting_rows(pipe):
    """Count the batch rows entering the U-Net's first layer while the body runs."""
    rows = [0]
    first = getattr(getattr(pipe, "unet", None), "conv_in", None)
    if first is None:
        yield rows
        return

    def count(module, inputs):
        rows[0] += int(inputs[0].shape[0])

    handle = first.register_forward_pre_hook(count)
    try:
        yield rows
    finally:
        handle.remove()


def _score_one(s: _Scores, attribution: Attribution, sample, checker, n: int) -> None:
    labels = _align(attribution.words, sample.words, sample.word_objects)
    regions = _match_regions(checker.regions(attribution.image, max_objects=n), sample.objects)
    both_found = n == 2 and all(r is not None for r in regions)
    both_right = both_found and all(
        (r[0].colour, r[0].shape) == (o.colour, o.shape)
        for r, o in zip(regions, sample.objects, strict=True)
    )
    per_word = attribution.maps is not None and attribution.per_word
    if both_found and per_word:
        s.specificity_images += 1
        s.specificity_images_exact += both_right
    for j, (word, k) in enumerate(zip(attribution.words, labels, strict=True)):
        relevance = None if attribution.relevance is None else attribution.relevance[j]
        size = float(np.abs(attribution.maps[j]).sum()) if per_word else None
        if k is None:
            if word.isalpha():
                if relevance is not None:
                    s.filler_words.append(relevance)
                if size is not None:
                    s.filler_map_size.append(size)
            continue
        if relevance is not None:
            s.object_words.append(relevance)
        if size is not None:
            s.object_map_size.append(size)
        if attribution.maps is None or regions[k] is None:
            continue
        mass, hit = localisation(attribution.maps[j], regions[k][1])
        if mass is not None:
            s.mass[n].append(mass)
        s.pointing[n].append(hit)
        if n == 1 and word.lower() in (*COLOURS, *SHAPES):
            if mass is not None:
                s.colour_shape_mass.append(mass)
            s.colour_shape_pointing.append(hit)
        if both_found and per_word:
            share = specificity(attribution.maps[j], regions[k][1], regions[1 - k][1])
            if share is not None:
                s.specificity.append(share)
                if both_right:
                    s.specificity_exact.append(share)
    _failure_scores(s, attribution.words, attribution.relevance, labels, regions, sample, False)
    if per_word:
        drawn = [float(np.clip(m, 0, None).sum()) for m in attribution.maps]
        _failure_scores(s, attribution.words, drawn, labels, regions, sample, True)


def _failure_scores(s: _Scores, texts, scores, labels, regions, sample, maps: bool) -> None:
    """Peer ratios of the colour and shape words of each asked object (``scores``: relevance,
    or each word's positive map mass), against whether the image shows them. ``scores=None``
    (a method without word scores) records only whether each object and word was missed."""
    record = scores is not None
    scores = scores if record else [1.0] * len(texts)  # equal scores: every ratio defined
    words = [Word(w, [j], r) for j, (w, r) in enumerate(zip(texts, scores, strict=True))]
    ratio = {id(w): r for w, r in peer_ratios(words)}
    word_score = s.word_score_maps if maps else s.word_score
    object_score = s.object_score_maps if maps else s.object_score
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
            if record:
                word_score.append(ratio[id(word)])
            if not maps:
                s.word_missed.append(not shown)
            object_ratios.append(ratio[id(word)])
        if object_ratios:
            if record:
                object_score.append(min(object_ratios))
            if not maps:
                missed = found is None or (found.colour, found.shape) != (obj.colour, obj.shape)
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
