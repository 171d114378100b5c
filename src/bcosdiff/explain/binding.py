"""Binding diagnostics: which drawn object each word's map lies on, and the words that went to
another object than their phrase's noun.

The drawn objects are read from the image and the explanation alone, so the method needs no
detector for the data at hand:

1. the **foreground** is where the image departs from its background colour (the median of
   its border pixels) by more than ``threshold`` in some channel;
2. its 8-connected components are the candidate **objects** (components under ``min_share``
   of the canvas are noise);
3. a component on which two phrases' nouns each dominate a large part (each noun's map is
   the largest there on at least ``split_share`` of the component's pixels) is **split**
   between them by which noun dominates each pixel: two objects drawn touching;
4. a phrase's **home** is the object holding the largest share of its noun's positive map;
5. a word's **stray share** is the share of its positive map on drawn objects that lies on
   objects other than its phrase's home (1 when none of its map lies on an object);
6. a phrase's **stray share** is the mean of its words' stray shares weighted by how much
   each word painted (its ``colour_change`` for B-cos explanations, else its relevance, else
   equal weights): the share of the phrase's painting that went elsewhere. Size and position
   words, which describe the scene more than the object and spread over both objects, weigh
   little because they paint little.

A phrase whose stray share exceeds ``stray_limit`` has a **misbound** word: the word whose
weighted stray share is the largest, with the other object that holds most of its map ("red"
drew the square asked for blue; "square" also drew the circle). The limit is calibrated per
model against ground truth (``bcosdiff eval binding``, :mod:`bcosdiff.evaluation.binding`)
and stored in the model's ``config.json``; absent words are the flagging rule's business
(:func:`~bcosdiff.explain.tokens.flag_words`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..pictures import departure
from .phrases import Phrase

__all__ = [
    "DEFAULT_STRAY_LIMIT",
    "BindingFinding",
    "DrawnObject",
    "WordPlacement",
    "drawn_objects",
    "find_misbound",
    "phrase_stray",
    "place_words",
]


@dataclass
class DrawnObject:
    mask: np.ndarray  # (H, W) bool
    name: str = ""  # the noun whose map lies mostly on it ("" when none does)


DEFAULT_STRAY_LIMIT = 0.5
"""Phrase stray share above which a word is misbound, for models without a calibration: more
of the phrase's painting on other objects than on its own."""


@dataclass(frozen=True)
class BindingFinding:
    word: str
    noun: str  # the noun of the word's phrase
    drew: str  # the name of the other object with most of the word's map ("" when unnamed)
    share: float  # the word's stray share (module docstring)
    phrase_share: float  # its phrase's weighted stray share

    def sentence(self) -> str:
        other = f"the {self.drew}" if self.drew else "an object of no asked noun"
        if self.word == self.noun:
            return f'"{self.word}" also drew {other}'
        return f'"{self.word}" drew {other}, not the {self.noun}'


@dataclass(frozen=True)
class WordPlacement:
    """Where one word of a phrase drew (module docstring)."""

    home: int  # the drawn object of the phrase's noun
    other: int | None  # the other object with the largest share of the word's map
    stray: float  # share of the word's on-object map away from home (1 with none on objects)
    on_objects: bool  # whether any of the word's map lies on a drawn object


def drawn_objects(
    image: np.ndarray,
    maps: np.ndarray,
    nouns: list[int],
    threshold: float = 0.12,
    min_share: float = 0.01,
    split_share: float = 0.25,
) -> list[DrawnObject]:
    """Objects of ``image`` (``(H, W, 3)`` uint8) given the words' maps (``(words, H, W)``)
    and the word indices of the phrases' nouns (see the module docstring)."""
    foreground = departure(image) > threshold
    labels, count = ndimage.label(foreground, structure=np.ones((3, 3), bool))
    least = min_share * foreground.size
    positive = np.clip(maps[nouns], 0, None) if nouns else np.zeros((0, *foreground.shape))
    dominant = positive.argmax(0) if nouns else None
    objects: list[DrawnObject] = []
    for k in range(1, count + 1):
        region = labels == k
        if region.sum() < least:
            continue
        parts = [region]
        if len(nouns) > 1:
            shares = [
                ((dominant == n) & region & (positive[n] > 0)).sum() for n in range(len(nouns))
            ]
            strong = [n for n, s in enumerate(shares) if s >= split_share * region.sum()]
            if len(strong) > 1:
                parts = [region & (dominant == n) for n in strong]
        objects += [DrawnObject(part) for part in parts if part.any()]
    return objects


def place_words(
    maps: np.ndarray, objects: list[DrawnObject], phrases: list[Phrase]
) -> dict[int, WordPlacement]:
    """``{word index: placement}`` for every word of a phrase whose noun drew an object."""
    positive = np.clip(maps, 0, None)
    if not objects:
        return {}
    shares = np.array([[float(heat[o.mask].sum()) for o in objects] for heat in positive])
    placed = {}
    for phrase in phrases:
        if shares[phrase.noun].sum() <= 0:
            continue  # the noun drew no object: nothing to bind to
        home = int(np.argmax(shares[phrase.noun]))
        for i in phrase.words:
            on_objects = float(shares[i].sum())
            away = shares[i].copy()
            away[home] = 0.0
            other = int(np.argmax(away)) if away.max() > 0 else None
            stray = 1.0 - shares[i, home] / on_objects if on_objects > 0 else 1.0
            placed[i] = WordPlacement(home, other, float(stray), on_objects > 0)
    return placed


def phrase_stray(
    phrase: Phrase, placed: dict[int, WordPlacement], weights: np.ndarray
) -> tuple[float, int | None]:
    """``(stray share of the phrase, the word with the largest weighted stray share)`` over
    the phrase's words with some map on a drawn object; the weights are each word's painting
    (module docstring). ``(0, None)`` when no word strays to another object."""
    words = [i for i in phrase.words if i in placed and placed[i].on_objects]
    if not any(placed[i].other is not None for i in words):
        return 0.0, None
    w = np.array([max(float(weights[i]), 0.0) for i in words])
    if w.sum() <= 0:
        w = np.ones(len(words))
    strays = np.array([placed[i].stray for i in words])
    return float((w * strays).sum() / w.sum()), words[int(np.argmax(w * strays))]


def find_misbound(
    image: np.ndarray,
    words: list[str],
    maps: np.ndarray,
    phrases: list[Phrase],
    stray_limit: float = DEFAULT_STRAY_LIMIT,
    weights: np.ndarray | None = None,
    **object_options,
) -> tuple[list[BindingFinding], list[DrawnObject], dict[int, WordPlacement]]:
    """The misbound words of one explanation (module docstring), the drawn objects, and every
    phrase word's placement. ``weights``: how much each word painted (default equal)."""
    weights = np.ones(len(words)) if weights is None else np.asarray(weights, dtype=float)
    nouns = [p.noun for p in phrases]
    objects = drawn_objects(image, maps, nouns, **object_options)
    placed = place_words(maps, objects, phrases)
    for phrase in phrases:  # name each object after the noun whose home it is
        if phrase.noun in placed and not objects[placed[phrase.noun].home].name:
            objects[placed[phrase.noun].home].name = words[phrase.noun]
    findings = []
    for phrase in phrases:
        share, word = phrase_stray(phrase, placed, weights)
        if word is None or not share > stray_limit:
            continue
        where = placed[word]
        drew = objects[where.other].name
        findings.append(BindingFinding(words[word], words[phrase.noun], drew, where.stray, share))
    return findings, objects, placed
