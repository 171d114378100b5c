"""The benchmark run: generate each prompt's image once, hand the same run to every method,
score each attribution, and run the deletion and insertion tests."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager

import numpy as np
import torch

from ...explain.registry import METHODS, get_method
from ...explain.tokens import is_content_word
from ...request import batch_requests
from .metrics import spearman
from .report import FaithfulnessResult, summarise
from .scoring import Attribution, Tally, score_image, to_attribution
from .truth import ShapesTruth

__all__ = ["evaluate_faithfulness"]


def evaluate_faithfulness(
    pipe,
    methods: Iterable[str] = ("bcos",),
    *,
    truth=None,
    prompts: int = 24,
    two_object_share: float = 0.5,
    steps: int = 25,
    seed: int = 0,
    guidance: float | None = None,
    deletion: bool = True,
    insertion: bool = True,
    shown_only: bool = False,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> list[FaithfulnessResult]:
    """Score each method on the same ``prompts`` generated images (prompt ``k`` sampled with
    seed ``k``). ``truth`` is the ground truth (:mod:`.truth`; default: held-out shapes
    prompts of data seed ``seed`` with ``two_object_share`` two-object prompts). Every image,
    and every image regenerated for the deletion test, is sampled at ``guidance`` (default:
    the model's scale). With ``shown_only`` the methods explain only the images that show
    every asked object (by the ground truth's reading), so that token specificity is
    measured where each word has an object of its own, at the cost of the images skipped;
    every measure is then one of such images."""
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {sorted(METHODS)}")
    truth = truth or ShapesTruth(pipe.sample_size, seed, two_object_share)
    runners = {name: get_method(name)(pipe) for name in methods}
    tallies = {name: Tally() for name in runners}
    changes: dict[tuple[str, int], float] = {}  # (edited prompt, seed) -> pixel change
    indices = list(range(prompts))
    for index in progress(indices) if progress else indices:
        prompt = truth.prompt(index)
        start = time.perf_counter()
        run = pipe.run(prompt.caption, steps=steps, seed=index, guidance=guidance)
        generation = time.perf_counter() - start
        image = run.image_array()
        found = truth.read(image, prompt)
        if shown_only and not all(f is not None and f.shown for f in found):
            continue
        for name, method in runners.items():
            with _counting_rows(pipe) as rows:
                start = time.perf_counter()
                result = method.attribute(run)
                elapsed = time.perf_counter() - start
            attribution = result if isinstance(result, Attribution) else to_attribution(result)
            if not np.array_equal(attribution.image, image):
                raise RuntimeError(f"method {name!r} explained a different image than generated")
            tally = tallies[name]
            tally.counts["images"] += 1
            tally.add("model_rows", rows[0])
            tally.add("time_ratio", elapsed / max(generation, 1e-9))
            score_image(tally, attribution, prompt, found)
            if deletion and attribution.relevance is not None:
                _deletion(tally, attribution, prompt.caption, pipe, run, changes)
            if insertion and attribution.saliency is not None:
                from ..insertion import insertion_deletion

                auc_in, auc_del = insertion_deletion(
                    pipe, run, torch.from_numpy(attribution.saliency)
                )
                tally.add("insertion_auc", auc_in)
                tally.add("deletion_auc", auc_del)
    return [summarise(name, prompts, tally, truth, shown_only) for name, tally in tallies.items()]


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


def without_word(caption: str, word: str, occurrence: int) -> str:
    """``caption`` with the ``occurrence``-th whole-word match of ``word`` removed."""
    matches = list(re.finditer(rf"(?<![A-Za-z]){re.escape(word)}(?![A-Za-z])", caption, re.I))
    if occurrence >= len(matches):
        return caption
    m = matches[occurrence]
    return " ".join((caption[: m.start()] + caption[m.end() :]).split())


def _deletion(tally: Tally, attribution: Attribution, caption: str, pipe, run, cache):
    """Remove each content word, regenerate with the run's seed, steps and guidance, compare
    the pixel change with the word's relevance (Spearman's ρ per prompt, and the pairs for the
    pooled ρ)."""
    seed = run.seed
    seen: dict[str, int] = {}
    edited, relevance = [], []
    for word, score in zip(attribution.words, attribution.relevance, strict=True):
        occurrence = seen.get(word.lower(), 0)
        seen[word.lower()] = occurrence + 1
        if not is_content_word(word):
            continue
        without = without_word(caption, word, occurrence)
        if without != caption and without.strip():
            edited.append(without)
            relevance.append(score)
    todo = sorted({e for e in edited if (e, seed) not in cache})
    if todo:
        base = attribution.image.astype(np.float64) / 255.0
        samples = pipe.sample_batch(
            batch_requests(todo, [seed] * len(todo), steps=run.steps, guidance=run.guidance)
        )
        images = pipe.images(samples)
        for prompt, image in zip(todo, images, strict=True):
            cache[prompt, seed] = float(np.abs(np.asarray(image, np.float64) / 255.0 - base).mean())
    change = [cache[e, seed] for e in edited]
    tally.values["deletion_pairs"].extend(zip(relevance, change, strict=True))
    rho = spearman(relevance, change)
    if rho is not None:
        tally.add("deletion_rho", rho)
