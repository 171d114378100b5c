"""Emoji scenes: one, two or three emoji on a white canvas, with a mask for every caption word.

The source is an emoji import (:func:`bcosdiff.data.emoji.import_emoji`). A scene draws its
emoji in one style (the design team's artwork), scales each into its own box and composites it
by its alpha. Captions name the emoji ("a cat face and a rocket"), sometimes by keywords
("cat, pet"), sometimes with the style ("a rocket, fluent style"). Like the shapes generator,
every sample is a pure function of ``(seed, index)`` and records, for each caption word, the
emoji it describes (or ``None``), and each emoji's mask (alpha ≥ 0.5 on the canvas): the
ground truth of the faithfulness benchmark.

The default concepts are the "things" of three Unicode categories, Animals & Nature, Food &
Drink and Travel & Places (482 concepts once the 24 clock faces are left out: they differ
only in hands that 32 pixels cannot show). Faces, people, hand gestures and symbols are left
out: at 32 pixels they are yellow discs, figures that differ in small details, or text.
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import BcosdiffError
from .images import read_metadata
from .shapes import caption_vocabulary, caption_words

__all__ = [
    "DEFAULT_CATEGORIES",
    "HELD_OUT_EMOJI_TEMPLATES",
    "EmojiConcept",
    "EmojiSample",
    "EmojiScenes",
    "emoji_phrase",
]

DEFAULT_CATEGORIES = ("Animals & Nature", "Food & Drink", "Travel & Places")
DEFAULT_EXCLUDE = r"\bo clock\b|\bthirty\b"  # the clock faces
TRAIN_EMOJI_TEMPLATES = ("{}", "{}", "{}", "{} emoji", "emoji of {}", "{} icon", "{}.")
# Never used in training: evaluation prompts built from these are unseen verbatim.
HELD_OUT_EMOJI_TEMPLATES = ("a drawing of {}", "{} sticker")
JOINERS = (" and ", " and ", " with ", " next to ", ", ")
STYLE_FORMS = (", {} style", " in {} style", " ({} style)")


@dataclass(frozen=True)
class EmojiConcept:
    key: str  # code points, e.g. "1f431"
    name: str  # "cat face"
    keywords: tuple[str, ...]
    category: str | None
    files: dict  # style -> image file, relative to the import folder


@dataclass
class EmojiSample:
    image: np.ndarray  # (H, W, 3) uint8
    caption: str
    words: list[str]
    word_objects: list[int | None]  # emoji index each word describes, or None
    masks: np.ndarray  # (n_emoji, H, W) bool
    concepts: list[EmojiConcept] = field(default_factory=list)
    style: str = ""
    boxes: list[tuple[int, int, int]] = field(default_factory=list)  # (left, top, side)


def emoji_phrase(name: str, article: bool = True) -> str:
    """``"cat face"`` -> ``"a cat face"``; ``"apple"`` -> ``"an apple"``."""
    if not article:
        return name
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


class EmojiScenes(torch.utils.data.Dataset):
    """``dataset[i] -> {"image": (3, size, size) in [0, 1], "caption": str}``; ``sample(i)``
    adds the ground truth. ``length`` only sets ``len()``; any index gives a sample."""

    def __init__(
        self,
        root: str | Path,
        size: int = 32,
        seed: int = 0,
        length: int = 1_000_000,
        categories: list[str] | tuple[str, ...] | None = DEFAULT_CATEGORIES,
        exclude: str | None = DEFAULT_EXCLUDE,
        styles: list[str] | tuple[str, ...] | None = None,
        two_object_prob: float = 0.3,
        three_object_prob: float = 0.05,
        style_word_prob: float = 0.3,
        keyword_prob: float = 0.1,
        templates: tuple[str, ...] = TRAIN_EMOJI_TEMPLATES,
    ):
        if size < 8:
            raise BcosdiffError("size must be at least 8 pixels")
        if not (
            two_object_prob >= 0
            and three_object_prob >= 0
            and two_object_prob + three_object_prob <= 1
        ):
            raise BcosdiffError("two_object_prob + three_object_prob must lie in [0, 1]")
        self.root = Path(root)
        self.size, self.seed, self.length = size, seed, length
        self.two_object_prob, self.three_object_prob = two_object_prob, three_object_prob
        self.style_word_prob, self.keyword_prob = style_word_prob, keyword_prob
        self.templates = tuple(templates)
        self.concepts = _read_concepts(self.root, categories, exclude, styles)
        self.styles = tuple(sorted({s for c in self.concepts for s in c.files}))
        self._images: dict[str, Image.Image] = {}

    def __len__(self) -> int:
        return self.length

    def variant(self, **changes) -> EmojiScenes:
        """The same concepts and images with other sampling settings (``seed``,
        ``two_object_prob``, ``templates``, ...)."""
        other = copy.copy(self)
        for name, value in changes.items():
            if not hasattr(self, name) or name in ("root", "concepts", "styles", "_images"):
                raise TypeError(f"EmojiScenes.variant got an unexpected setting {name!r}")
            setattr(other, name, value)
        return other

    def vocabulary(self) -> frozenset[str]:
        """Every word (lower case, letters only) that a caption of these scenes can hold: the
        templates, joiners and style phrases, the concept names and their keywords."""
        parts = [*self.templates, *JOINERS, *STYLE_FORMS, *self.styles, "a", "an"]
        parts += [text for c in self.concepts for text in (c.name, *c.keywords)]
        return caption_vocabulary(parts)

    def depicting_vocabulary(self) -> frozenset[str]:
        """The words of :meth:`vocabulary` that describe what is drawn: the concept names,
        their keywords and the style names (not the templates' framing words, joiners or
        articles)."""
        parts = [text for c in self.concepts for text in (c.name, *c.keywords)]
        return caption_vocabulary([*parts, *self.styles])

    def concept(self, name: str) -> EmojiConcept:
        for concept in self.concepts:
            if concept.name == name:
                return concept
        raise KeyError(name)

    def _rgba(self, file: str) -> Image.Image:
        image = self._images.get(file)
        if image is None:
            with Image.open(self.root / file) as opened:
                image = opened.convert("RGBA")
            self._images[file] = image
        return image

    def _count(self, rng: random.Random) -> int:
        draw = rng.random()
        if draw < self.three_object_prob:
            return 3
        return 2 if draw < self.three_object_prob + self.two_object_prob else 1

    def sample(self, index: int) -> EmojiSample:
        rng = random.Random(f"emoji:{self.seed}:{index}")
        count = self._count(rng)
        style = rng.choice(self.styles)
        usable = [c for c in self.concepts if style in c.files]
        concepts = rng.sample(usable, count)
        boxes = _boxes(rng, count, self.size)
        use_keywords = count == 1 and rng.random() < self.keyword_prob
        phrases = []
        for concept in concepts:
            if use_keywords and concept.keywords:
                picked = rng.sample(concept.keywords, min(len(concept.keywords), 2))
                phrases.append(", ".join([concept.name, *picked]))
            else:
                phrases.append(emoji_phrase(concept.name, article=rng.random() < 0.8))
        return self.compose(concepts, style, boxes, phrases, rng)

    def compose(
        self,
        concepts: list[EmojiConcept],
        style: str,
        boxes: list[tuple[int, int, int]],
        phrases: list[str],
        rng: random.Random,
    ) -> EmojiSample:
        """Render ``concepts`` in ``style`` into ``boxes`` and caption them with ``phrases``."""
        joiners = [rng.choice(JOINERS) for _ in phrases[1:]]
        content = phrases[0] + "".join(j + p for j, p in zip(joiners, phrases[1:], strict=True))
        template = rng.choice(self.templates)
        prefix, _, suffix = template.partition("{}")
        style_text = ""
        if rng.random() < self.style_word_prob:
            style_text = rng.choice(STYLE_FORMS).format(style)
        caption = f"{prefix}{content}{suffix}{style_text}".strip()
        canvas = Image.new("RGBA", (self.size, self.size), (255, 255, 255, 255))
        masks = np.zeros((len(concepts), self.size, self.size), dtype=bool)
        for k, (concept, (left, top, side)) in enumerate(zip(concepts, boxes, strict=True)):
            art = self._rgba(concept.files[style]).resize((side, side), Image.Resampling.BOX)
            canvas.alpha_composite(art, (left, top))
            alpha = np.asarray(art, dtype=np.uint8)[..., 3] >= 128
            masks[k, top : top + side, left : left + side] = alpha
        image = np.asarray(canvas.convert("RGB"), dtype=np.uint8).copy()
        words = caption_words(caption)
        labels = _ground_truth(words, caption_words(prefix), phrases, joiners)
        return EmojiSample(image, caption, words, labels, masks, list(concepts), style, boxes)

    def __getitem__(self, index: int) -> dict:
        sample = self.sample(index)
        image = torch.from_numpy(sample.image).permute(2, 0, 1).float() / 255.0
        return {"image": image, "caption": sample.caption}


def _read_concepts(root: Path, categories, exclude, styles) -> list[EmojiConcept]:
    rows = read_metadata(root)
    wanted = set(categories) if categories else None
    pattern = re.compile(exclude) if exclude else None
    grouped: dict[str, dict] = {}
    for row in rows:
        if "concept" not in row or "style" not in row or "name" not in row:
            raise BcosdiffError(f"{root} is not an emoji import (run `bcosdiff data emoji`)")
        if wanted is not None and row.get("category") not in wanted:
            continue
        if pattern is not None and pattern.search(row["name"]):
            continue
        if styles and row["style"] not in styles:
            continue
        entry = grouped.setdefault(
            row["concept"],
            {"name": row["name"], "keywords": row.get("keywords", []), "cat": row.get("category")},
        )
        entry.setdefault("files", {})[row["style"]] = row["file_name"]
    if not grouped:
        raise BcosdiffError(f"{root} has no emoji of the categories {sorted(wanted or [])}")
    return [
        EmojiConcept(key, g["name"], tuple(g["keywords"]), g["cat"], g["files"])
        for key, g in sorted(grouped.items())
    ]


def _boxes(rng: random.Random, count: int, size: int) -> list[tuple[int, int, int]]:
    """Square boxes ``(left, top, side)`` for ``count`` emoji, at least ``size / 16`` pixels
    apart, so that the emoji of a scene are separate objects."""
    scale = {1: (0.78, 0.95), 2: (0.42, 0.54), 3: (0.36, 0.44)}[count]
    gap = max(1, round(size / 16))
    while True:
        boxes: list[tuple[int, int, int]] = []
        for _ in range(count):
            side = max(4, round(size * rng.uniform(*scale)))
            for _ in range(100):
                left = rng.randint(0, size - side)
                top = rng.randint(0, size - side)
                if all(_apart((left, top, side), box, gap) for box in boxes):
                    boxes.append((left, top, side))
                    break
        if len(boxes) == count:
            return boxes


def _apart(a: tuple[int, int, int], b: tuple[int, int, int], gap: int) -> bool:
    (la, ta, sa), (lb, tb, sb) = a, b
    return la + sa + gap <= lb or lb + sb + gap <= la or ta + sa + gap <= tb or tb + sb + gap <= ta


def _ground_truth(
    words: list[str], prefix: list[str], phrases: list[str], joiners: list[str]
) -> list[int | None]:
    """Emoji index per caption word: the words of phrase k (its name or keywords, not the
    article) describe emoji k; the template, joiners and style words describe none."""
    labels: list[int | None] = [None] * len(words)
    cursor = len(prefix)
    for k, phrase in enumerate(phrases):
        phrase_words = caption_words(phrase)
        for offset, word in enumerate(phrase_words):
            if word not in ("a", "an", ","):
                labels[cursor + offset] = k
        cursor += len(phrase_words)
        if k < len(joiners):
            cursor += len(caption_words(joiners[k]))
    return labels
