"""Procedural "shapes" data with ground truth for every caption word.

Each sample is a plain white background with one or two non-overlapping objects. An object
has a shape (circle, square, triangle), a colour (red, green, blue, yellow, purple, orange),
a size (small, big) and, optionally, a position word (left, right, top, bottom) that its
placement respects. Captions mix the content words with LAION-like filler ("a photo of",
"stock image", "free vector illustration", "on a white background", punctuation, ...).

Everything is a pure function of ``(seed, index)``: the same pair always yields the same
image, caption and masks, at any resolution. For every caption word the sample records which
object it describes (or ``None`` for filler), and each object's pixel mask — the ground truth
that evaluation uses for faithfulness metrics.

Images are rendered with 4× supersampling (area-averaged), so edges are anti-aliased; masks
are the objects' coverage ≥ 0.5 at the output resolution.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = [
    "BACKGROUND",
    "COLOURS",
    "HELD_OUT_TEMPLATES",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "ShapeObject",
    "ShapeSample",
    "ShapesDataset",
    "caption_vocabulary",
    "caption_words",
    "render_objects",
]

SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 38, 38),
    "green": (34, 160, 60),
    "blue": (37, 84, 222),
    "yellow": (240, 205, 30),
    "purple": (140, 56, 185),
    "orange": (245, 130, 20),
}
SIZES: dict[str, float] = {"small": 0.18, "big": 0.32}  # radius as a fraction of the side
POSITIONS = ("left", "right", "top", "bottom")
JOINERS = ("and", "with", "and")  # between the phrases of a two-object caption
ARTICLES = ("a", "a", "one")
BACKGROUND = (255, 255, 255)

# Caption templates. "{}" is replaced by the content phrase.
TRAIN_TEMPLATES = (
    "{}",
    "a photo of {}",
    "{} on a white background",
    "stock image of {}",
    "{} - stock image",
    "free vector illustration of {}",
    "{}, isolated on white",
    "clipart: {}",
    "an image with {}",
    "simple drawing of {} .",
    "{} | free download",
    "picture of {} for kids",
)
# Never used for training captions: prompts built from these are unseen verbatim.
HELD_OUT_TEMPLATES = (
    "a rendering of {}",
    "{} in flat design",
    "minimal poster showing {}",
)
_WORD = re.compile(r"[A-Za-z]+|[0-9]+|[^\sA-Za-z0-9]")


def caption_words(caption: str) -> list[str]:
    """Split a caption into words and punctuation marks (the unit of the ground truth)."""
    return _WORD.findall(caption)


def caption_vocabulary(texts: Iterable[str]) -> frozenset[str]:
    """The words (lower case, letters only) of ``texts``: what a data set's captions are made
    of, for telling a prompt's words the model never saw apart from those it did."""
    return frozenset(w.lower() for text in texts for w in caption_words(text) if w.isalpha())


@dataclass(frozen=True)
class ShapeObject:
    shape: str
    colour: str
    size: str
    position: str | None
    centre: tuple[float, float]  # (x, y) in [0, 1]
    radius: float  # fraction of the side

    def phrase(self, rng: random.Random, with_size: bool) -> str:
        article = rng.choice(ARTICLES)
        words = [article, *([self.size] if with_size else []), self.colour, self.shape]
        if self.position is not None:
            words += (
                ["on the", self.position]
                if self.position in ("left", "right")
                else [
                    "at the",
                    self.position,
                ]
            )
        return " ".join(words)


@dataclass
class ShapeSample:
    image: np.ndarray  # (H, W, 3) uint8
    caption: str
    words: list[str]
    word_objects: list[int | None]  # object index each word describes, or None
    masks: np.ndarray  # (n_objects, H, W) bool
    objects: list[ShapeObject] = field(default_factory=list)


def shape_coverage(shape: str, centre: tuple[float, float], radius: float, size: int) -> np.ndarray:
    """Fraction of each output pixel covered by the object (4× supersampled)."""
    factor = 4
    n = size * factor
    coords = (np.arange(n) + 0.5) / n
    xs, ys = np.meshgrid(coords, coords)
    dx, dy = xs - centre[0], ys - centre[1]
    if shape == "circle":
        inside = dx * dx + dy * dy <= radius * radius
    elif shape == "square":
        half = radius * 0.85  # equal visual weight to the circle
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    elif shape == "triangle":
        # Upward equilateral triangle inscribed in a circle of 1.15·radius.
        r = radius * 1.15
        top = -r
        bottom = r / 2
        inside = (dy >= top) & (dy <= bottom)
        half_width = (dy - top) / (bottom - top) * (r * math.sqrt(3) / 2)
        inside &= np.abs(dx) <= half_width
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return inside.reshape(size, factor, size, factor).mean(axis=(1, 3))


def render_objects(objects: list[ShapeObject], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Image ``(H, W, 3)`` uint8 and masks ``(n, H, W)`` bool for objects on the background."""
    image = np.empty((size, size, 3), dtype=np.float64)
    image[:] = BACKGROUND
    masks = []
    for obj in objects:
        cover = shape_coverage(obj.shape, obj.centre, obj.radius, size)[..., None]
        image = image * (1 - cover) + np.asarray(COLOURS[obj.colour], dtype=np.float64) * cover
        masks.append(cover[..., 0] >= 0.5)
    mask_array = np.stack(masks) if masks else np.zeros((0, size, size), dtype=bool)
    return np.round(image).astype(np.uint8), mask_array


def _place(rng: random.Random, radius: float, position: str | None) -> tuple[float, float]:
    margin = radius * 1.2
    lo, hi = margin, 1 - margin
    mid = 0.5
    x_range, y_range = (lo, hi), (lo, hi)
    if position == "left":
        x_range = (lo, max(lo, mid - radius * 0.6))
    elif position == "right":
        x_range = (min(hi, mid + radius * 0.6), hi)
    elif position == "top":
        y_range = (lo, max(lo, mid - radius * 0.6))
    elif position == "bottom":
        y_range = (min(hi, mid + radius * 0.6), hi)
    return rng.uniform(*x_range), rng.uniform(*y_range)


# Rounds of 50 placement attempts before a scene is started again. A big first object near
# the centre can leave no room for a second one; redrawing only the second would then never
# end. The bound is far above what any placeable scene needs, so every other scene is the
# one it always was.
_RESTART_AFTER = 1000


def _overlap(a: ShapeObject, b: ShapeObject) -> bool:
    gap = math.dist(a.centre, b.centre)
    return gap < 1.2 * (a.radius + b.radius) + 0.04


class ShapesDataset(torch.utils.data.Dataset):
    """``dataset[i] -> {"image": (3, H, W) float in [0, 1], "caption": str}``.

    ``length`` only sets ``len()``; any index gives a sample. ``templates`` defaults to the
    training templates; evaluation uses :data:`HELD_OUT_TEMPLATES`.
    """

    def __init__(
        self,
        size: int = 32,
        length: int = 1_000_000,
        seed: int = 0,
        two_object_prob: float = 0.3,
        position_prob: float = 0.25,
        size_word_prob: float = 0.7,
        templates: tuple[str, ...] = TRAIN_TEMPLATES,
    ):
        if size < 8:
            raise ValueError("size must be at least 8 pixels")
        self.size = size
        self.length = length
        self.seed = seed
        self.two_object_prob = two_object_prob
        self.position_prob = position_prob
        self.size_word_prob = size_word_prob
        self.templates = templates

    def __len__(self) -> int:
        return self.length

    def vocabulary(self) -> frozenset[str]:
        """Every word (lower case, letters only) that a caption of this data set can hold."""
        parts = [*self.templates, *ARTICLES, *JOINERS, *COLOURS, *SHAPES, *SIZES, *POSITIONS]
        return caption_vocabulary([*parts, "on the", "at the"])

    def depicting_vocabulary(self) -> frozenset[str]:
        """The words of :meth:`vocabulary` that describe what is drawn: colours, shapes,
        sizes and positions (not the templates' framing words, articles or joiners)."""
        return caption_vocabulary([*COLOURS, *SHAPES, *SIZES, *POSITIONS])

    def _rng(self, index: int) -> random.Random:
        return random.Random(f"shapes:{self.seed}:{index}")

    def make_objects(self, rng: random.Random) -> list[ShapeObject]:
        count = 2 if rng.random() < self.two_object_prob else 1
        objects: list[ShapeObject] = []
        used_positions: set[str] = set()
        failures = 0
        while len(objects) < count:
            if failures == _RESTART_AFTER:  # the objects so far leave no room: start over
                objects, used_positions, failures = [], set(), 0
            size = rng.choice(tuple(SIZES))
            radius = SIZES[size] * (0.75 if count == 2 else 1.0) * rng.uniform(0.9, 1.1)
            position = None
            if rng.random() < self.position_prob:
                options = [p for p in POSITIONS if p not in used_positions]
                position = rng.choice(options)
            for _ in range(50):
                candidate = ShapeObject(
                    rng.choice(SHAPES),
                    rng.choice(tuple(COLOURS)),
                    size,
                    position,
                    _place(rng, radius, position),
                    radius,
                )
                if all(not _overlap(candidate, other) for other in objects):
                    break
            else:
                failures += 1
                continue  # could not place: draw new attributes
            if any(o.colour == candidate.colour and o.shape == candidate.shape for o in objects):
                continue  # keep the two objects distinguishable by their words
            objects.append(candidate)
            if position:
                used_positions.add(position)
        return objects

    def sample(self, index: int) -> ShapeSample:
        rng = self._rng(index)
        objects = self.make_objects(rng)
        with_size = rng.random() < self.size_word_prob
        phrases = [obj.phrase(rng, with_size) for obj in objects]
        template = rng.choice(self.templates)
        content = f" {rng.choice(JOINERS)} ".join(phrases)
        prefix, _, suffix = template.partition("{}")
        caption = f"{prefix}{content}{suffix}".strip()
        image, masks = render_objects(objects, self.size)
        words = caption_words(caption)
        word_objects = _ground_truth(
            words, caption_words(prefix), [caption_words(p) for p in phrases]
        )
        return ShapeSample(image, caption, words, word_objects, masks, objects)

    def __getitem__(self, index: int) -> dict:
        sample = self.sample(index)
        image = torch.from_numpy(sample.image).permute(2, 0, 1).float() / 255.0
        return {"image": image, "caption": sample.caption}


_CONTENT = set(COLOURS) | set(SHAPES) | set(SIZES) | set(POSITIONS)


def _ground_truth(
    words: list[str], prefix: list[str], phrases: list[list[str]]
) -> list[int | None]:
    """Object index per word: content words of phrase k describe object k, others None."""
    labels: list[int | None] = [None] * len(words)
    cursor = len(prefix)
    for k, phrase in enumerate(phrases):
        for offset, word in enumerate(phrase):
            if word in _CONTENT:
                labels[cursor + offset] = k
        cursor += len(phrase) + 1  # the joining word ("and" / "with")
    return labels
