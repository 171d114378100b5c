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
4. each content word goes to the object that holds the largest share of its positive map
   (its **object**), provided that share is at least ``min_mass``; otherwise it drew no
   object.

A word is **misbound** when its phrase's noun went to one object and the word to another
("red" drew the square asked for blue). Nouns themselves and words whose noun drew nothing
cannot be misbound: absent words are the flagging rule's business
(:func:`~bcosdiff.explain.tokens.flag_words`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..pictures import departure
from .phrases import Phrase

__all__ = ["BindingFinding", "DrawnObject", "drawn_objects", "find_misbound", "word_objects"]


@dataclass
class DrawnObject:
    mask: np.ndarray  # (H, W) bool
    name: str = ""  # the noun whose map lies mostly on it ("" when none does)


@dataclass(frozen=True)
class BindingFinding:
    word: str
    noun: str  # the noun of the word's phrase
    drew: str  # the name of the object the word's map lies on ("" when it has none)
    share: float  # share of the word's positive map on that object

    def sentence(self) -> str:
        other = f"the {self.drew}" if self.drew else "an object of no asked noun"
        return f'"{self.word}" drew {other}, not the {self.noun}'


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


def word_objects(maps: np.ndarray, objects: list[DrawnObject], min_mass: float = 0.3):
    """Per word: ``(object index or None, share of its positive map on that object)``."""
    result = []
    for heat in np.clip(maps, 0, None):
        total = float(heat.sum())
        if total <= 0 or not objects:
            result.append((None, 0.0))
            continue
        shares = [float(heat[o.mask].sum()) / total for o in objects]
        best = int(np.argmax(shares))
        result.append((best, shares[best]) if shares[best] >= min_mass else (None, shares[best]))
    return result


def find_misbound(
    image: np.ndarray,
    words: list[str],
    maps: np.ndarray,
    phrases: list[Phrase],
    min_mass: float = 0.3,
    **object_options,
) -> tuple[list[BindingFinding], list[DrawnObject]]:
    """The misbound words of one explanation (module docstring) and the drawn objects."""
    nouns = [p.noun for p in phrases]
    objects = drawn_objects(image, maps, nouns, **object_options)
    placed = word_objects(maps, objects, min_mass)
    for phrase in phrases:  # name each object after the noun that lies on it
        k, _ = placed[phrase.noun]
        if k is not None and not objects[k].name:
            objects[k].name = words[phrase.noun]
    findings = []
    for phrase in phrases:
        noun_object, _ = placed[phrase.noun]
        if noun_object is None:
            continue
        for j in phrase.attributes:
            k, share = placed[j]
            if k is not None and k != noun_object:
                findings.append(
                    BindingFinding(words[j], words[phrase.noun], objects[k].name, share)
                )
    return findings, objects
