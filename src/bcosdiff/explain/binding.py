"""Binding diagnostics: which drawn object each word's map lies on, and the words that went to
another object than the rest of their phrase.

The drawn objects are read from the image and the explanation alone, so the method needs no
detector for the data at hand:

1. the **foreground** is where the image departs from its background colour (the median of
   its border pixels) by more than ``threshold`` in some channel;
2. its 8-connected components are the candidate **objects** (components under ``min_share``
   of the canvas are noise);
3. a component on which two phrases' nouns each dominate a large part (each noun's map is
   the largest there on at least ``split_share`` of the component's pixels) is **split**
   between them by which noun dominates each pixel: two objects drawn touching;
4. a word's **density** on an object is the mean of its positive map over the object's
   pixels: how much of that object's painting is the word's, whatever the object's size
   (a sum over the pixels would hand every word to the largest object); its **spread** is
   its densities divided by their sum over the drawn objects;
5. a phrase's **home** is the object on which its words' spreads, weighted by how much each
   word painted (its ``colour_change`` for B-cos explanations, else its relevance, else
   equal weights), add up to the most: the object the phrase as a whole drew;
6. a word's **stray share** is ``1 −`` its spread on its phrase's home (0: all of its
   painting is on that object; 1: none), and a phrase's stray share is that of its most
   stray word.

A phrase whose stray share exceeds ``stray_limit`` has a **misbound** word, its most stray
one, with the other object on which it is densest (``"red circle" split: "red" drew the
square, the rest the circle``; each noun names one object, matched by where the nouns are
densest). A word is judged by itself, not averaged with its phrase: in a clean colour swap
("a blue square and a green circle" drawn as a green square and a blue circle) each phrase
has one word at home and one elsewhere. The limit is calibrated per model against ground
truth (``bcosdiff eval binding``, ``bcosdiff eval phrasing``;
:mod:`bcosdiff.evaluation.binding`) and stored in the model's ``config.json``; absent words
are the flagging rule's business (:func:`~bcosdiff.explain.tokens.flag_words`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

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
    "word_densities",
    "word_spreads",
]


@dataclass
class DrawnObject:
    mask: np.ndarray  # (H, W) bool
    name: str = ""  # the noun matched to it (``find_misbound``; "" when none)


DEFAULT_STRAY_LIMIT = 0.5
"""Stray share above which a word is misbound, for models without a calibration: with two
objects, the word is denser on the other one than on its phrase's."""


@dataclass(frozen=True)
class BindingFinding:
    word: str
    noun: str  # the noun of the word's phrase
    phrase: str  # the phrase's words
    drew: str  # the name of the other object on which the word is densest ("" when unnamed)
    home: str  # the name of the phrase's home ("" when unnamed)
    share: float  # the word's stray share (module docstring), its phrase's stray share

    def sentence(self) -> str:
        def name(obj: str) -> str:
            return f"the {obj}" if obj else "an object of no asked noun"

        return (
            f'"{self.phrase}" split: "{self.word}" drew {name(self.drew)}, '
            f"the rest {name(self.home)}"
        )


@dataclass(frozen=True)
class WordPlacement:
    """Where one word of a phrase drew (module docstring)."""

    home: int  # the drawn object of the word's phrase
    other: int | None  # the other object on which the word is densest (None: only home)
    stray: float  # 1 − the word's spread on its phrase's home


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


def word_densities(maps: np.ndarray, objects: list[DrawnObject]) -> np.ndarray:
    """``(words, objects)``: the mean of each word's positive map over each object's pixels
    (the module docstring's density)."""
    positive = np.clip(maps, 0, None)
    return np.array([[float(heat[o.mask].mean()) for o in objects] for heat in positive])


def word_spreads(maps: np.ndarray, objects: list[DrawnObject]) -> np.ndarray:
    """``(words, objects)``: each word's densities divided by their sum over the objects (the
    module docstring's spread); a row of zeros for a word that paints no object."""
    density = word_densities(maps, objects)
    total = density.sum(1, keepdims=True)
    return np.divide(density, total, out=np.zeros_like(density), where=total > 0)


def place_words(
    maps: np.ndarray,
    objects: list[DrawnObject],
    phrases: list[Phrase],
    weights: np.ndarray | None = None,
) -> dict[int, WordPlacement]:
    """``{word index: placement}`` for every word of a phrase with some map on a drawn object
    (module docstring); ``weights`` is how much each word painted (default equal)."""
    if not objects:
        return {}
    weights = np.ones(len(maps)) if weights is None else np.clip(weights, 0, None)
    spread = word_spreads(maps, objects)
    placed = {}
    for phrase in phrases:
        words = [i for i in phrase.words if spread[i].any()]
        if not words:
            continue  # the phrase painted no object: nothing to bind to
        w = np.array([weights[i] for i in words])
        w = w if w.sum() > 0 else np.ones(len(words))
        home = int(np.argmax(w @ spread[words]))
        for i in words:
            away = spread[i].copy()
            away[home] = 0.0
            other = int(np.argmax(away)) if away.max() > 0 else None
            placed[i] = WordPlacement(home, other, float(1.0 - spread[i, home]))
    return placed


def phrase_stray(phrase: Phrase, placed: dict[int, WordPlacement]) -> tuple[float, int | None]:
    """``(stray share of the phrase, its most stray word)``: the largest stray share among its
    words placed on a drawn object (module docstring). ``(0, None)`` when no word strays to
    another object."""
    words = [i for i in phrase.words if i in placed and placed[i].other is not None]
    if not words:
        return 0.0, None
    worst = max(words, key=lambda i: placed[i].stray)
    return placed[worst].stray, worst


def _name_objects(objects: list[DrawnObject], noun_maps: np.ndarray, names: list[str]) -> None:
    """Name objects after nouns (``noun_maps``: their maps, in the order of ``names``), one
    object per noun: the matching of nouns to objects with the largest summed spread (each
    noun's densities over the objects, normalised), so that two objects never share a name;
    an object no noun paints stays unnamed."""
    if not objects or not names:
        return
    spread = word_spreads(noun_maps, objects)
    for n, j in zip(*linear_sum_assignment(spread, maximize=True), strict=True):
        if spread[n, j] > 0 and not objects[j].name:
            objects[j].name = names[n]


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
    nouns = [p.noun for p in phrases]
    objects = drawn_objects(image, maps, nouns, **object_options)
    placed = place_words(maps, objects, phrases, weights)
    _name_objects(objects, maps[nouns], [words[n] for n in nouns])
    findings = []
    for phrase in phrases:
        share, word = phrase_stray(phrase, placed)
        if word is None or not share > stray_limit:
            continue
        where = placed[word]
        text = " ".join(words[i] for i in phrase.words)
        home, drew = objects[where.home].name, objects[where.other].name
        findings.append(BindingFinding(words[word], words[phrase.noun], text, drew, home, share))
    return findings, objects, placed
