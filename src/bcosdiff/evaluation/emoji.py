"""Does an image show the asked emoji? Retrieval among the real emoji in a learnt feature space.

No pretrained image model can be loaded here, so bcosdiff trains its own instrument, as for
the shapes Fréchet distance (:mod:`bcosdiff.evaluation.features`): a small CNN learns, on
emoji scenes of the real artwork (all four styles, one to three emoji at random scales and
places), which concepts a scene shows (one sigmoid per concept). Its pooled features are the
space in which

- **recognisability** is measured: the generated image's feature vector is compared (cosine)
  with every real emoji of the concept subset drawn alone at the canonical scale, in every
  style; a concept's score is its best style's, and the asked concept's rank among all
  concepts gives top-1 / top-5. The nearest real image's style tells which style was drawn.
- **scenes** are read: the image's departures from its background are split into regions
  (:func:`emoji_regions`), each region is cut out, centred at the canonical scale and
  retrieved alone. An asked emoji is recognised when some region ranks it in the top ``k``.
- the **emoji Fréchet distance** is computed between generated and real images.

The instrument is measured on real images before it is trusted with generated ones
(:func:`instrument_accuracy`): retrieval of real single emoji at other scales and places,
and of both emoji in real two-emoji scenes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from torch import Tensor

from ..data.emoji_scenes import EmojiConcept, EmojiScenes, emoji_phrase
from ..pictures import border_colour, departure
from ..request import batch_requests
from .emoji_features import (
    EMOJI_FEATURES,
    EmojiFeatureNet,
    load_emoji_features,
    save_emoji_features,
    train_emoji_features,
)

__all__ = [
    "CANONICAL_SCALE",
    "EMOJI_FEATURES",
    "FOREGROUND_THRESHOLD",
    "EmojiFeatureNet",
    "EmojiGallery",
    "cut_out",
    "emoji_regions",
    "load_emoji_features",
    "save_emoji_features",
    "train_emoji_features",
]

CANONICAL_SCALE = 0.86  # side of a lone emoji on the canvas (the middle of the training range)
FOREGROUND_THRESHOLD = 0.12  # largest channel departure from the background, in [0, 1]


def lone_emoji(
    scenes: EmojiScenes, concept: EmojiConcept, style: str, scale: float = CANONICAL_SCALE
) -> np.ndarray:
    """``(H, W, 3)`` uint8: one real emoji centred on the canvas at ``scale``."""
    side = max(4, round(scenes.size * scale))
    offset = (scenes.size - side) // 2
    sample = scenes.compose([concept], style, [(offset, offset, side)], ["x"], random.Random(0))
    return sample.image


@dataclass
class Retrieval:
    ranking: list[int]  # concept indices, best first
    style: str  # the style of the nearest real image

    def rank_of(self, concept_index: int) -> int:
        return self.ranking.index(concept_index)


class EmojiGallery:
    """The real emoji of ``scenes`` in the feature space of ``net``, for retrieval."""

    def __init__(self, net: EmojiFeatureNet, scenes: EmojiScenes):
        self.net, self.scenes = net, scenes
        self.concepts = scenes.concepts
        entries = [(i, s) for i, c in enumerate(self.concepts) for s in sorted(c.files)]
        self.concept_of = torch.tensor([i for i, _ in entries])
        self.style_of = [s for _, s in entries]
        images = np.stack([lone_emoji(scenes, self.concepts[i], s) for i, s in entries])
        self.real_images = torch.from_numpy(images).permute(0, 3, 1, 2)
        self.features = F.normalize(self.embed(self.real_images), dim=1)
        # Cut-outs of scene regions are compared with the real emoji cut out the same way
        # (their own transparent margins differ from the region's tight box).
        cut = np.stack([_cut_out_whole(image) for image in images])
        self.cut_features = F.normalize(self.embed(torch.from_numpy(cut).permute(0, 3, 1, 2)), 1)

    @torch.no_grad()
    def embed(self, images: Tensor, batch: int = 256) -> Tensor:
        return torch.cat([self.net(images[i : i + batch]) for i in range(0, len(images), batch)])

    def index(self, name: str) -> int:
        return next(i for i, c in enumerate(self.concepts) if c.name == name)

    def retrieve(
        self, images: Tensor, leave_out: list[str] | None = None, cut_outs: bool = False
    ) -> list[Retrieval]:
        """Concept rankings of ``uint8 (N, 3, H, W)`` images; ``leave_out[n]`` names a style
        whose real images image ``n`` is not compared with; ``cut_outs``: the images are
        :func:`cut_out` regions, compared with the real emoji cut out alike."""
        gallery = self.cut_features if cut_outs else self.features
        similarity = F.normalize(self.embed(images), dim=1) @ gallery.T
        if leave_out is not None:
            styles = np.asarray(self.style_of)
            hidden = torch.from_numpy(styles[None, :] == np.asarray(leave_out)[:, None])
            similarity = similarity.masked_fill(hidden, -2.0)
        per_concept = torch.full((len(images), len(self.concepts)), -2.0)
        per_concept.scatter_reduce_(
            1, self.concept_of.expand(len(images), -1), similarity, reduce="amax"
        )
        order = per_concept.argsort(dim=1, descending=True)
        nearest = similarity.argmax(dim=1)
        return [
            Retrieval(order[n].tolist(), self.style_of[int(nearest[n])]) for n in range(len(images))
        ]


def emoji_regions(
    image: np.ndarray,
    threshold: float = FOREGROUND_THRESHOLD,
    min_share: float = 0.015,
    limit: int = 3,
) -> list[tuple[int, int, int, int]]:
    """Boxes ``(top, left, bottom, right)`` of the largest objects that depart from the
    background (``threshold``: the largest channel difference, in [0, 1]). Objects are the
    8-connected foreground components, with components whose bounding boxes overlap joined
    into one (an emoji's separate pieces); objects under ``min_share`` of the canvas are
    noise."""
    foreground = departure(image) > threshold
    labels, _ = ndimage.label(foreground, structure=np.ones((3, 3), bool))
    parts = []
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is not None:
            rows, cols = found
            area = int((labels[found] == index).sum())
            parts.append([area, rows.start, cols.start, rows.stop, cols.stop])
    merged = True
    while merged:  # join parts whose boxes overlap until none do
        merged = False
        for i in range(len(parts)):
            for j in range(i + 1, len(parts)):
                a, b = parts[i], parts[j]
                if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]:
                    parts[i] = [
                        a[0] + b[0],
                        min(a[1], b[1]),
                        min(a[2], b[2]),
                        max(a[3], b[3]),
                        max(a[4], b[4]),
                    ]
                    del parts[j]
                    merged = True
                    break
            if merged:
                break
    least = min_share * image.shape[0] * image.shape[1]
    parts = sorted((p for p in parts if p[0] >= least), key=lambda p: -p[0])
    return [tuple(p[1:]) for p in parts[:limit]]


def cut_out(image: np.ndarray, box: tuple[int, int, int, int], scale: float = CANONICAL_SCALE):
    """The region ``box`` of ``image`` on a white canvas of the same size, its longer side
    scaled to ``scale`` of the canvas and centred (``(H, W, 3)`` uint8)."""
    top, left, bottom, right = box
    size = image.shape[0]
    background = tuple(int(round(v)) for v in border_colour(image))
    side = max(bottom - top, right - left)
    square = Image.new("RGB", (side, side), background)
    square.paste(
        Image.fromarray(image[top:bottom, left:right]),
        ((side - (right - left)) // 2, (side - (bottom - top)) // 2),
    )
    target = max(4, round(size * scale))
    resized = square.resize((target, target), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (size, size), background)
    canvas.paste(resized, ((size - target) // 2, (size - target) // 2))
    return np.asarray(canvas, dtype=np.uint8).copy()


def _cut_out_whole(image: np.ndarray) -> np.ndarray:
    """A lone emoji's image cut out as scene regions are: all its regions' joint box."""
    boxes = emoji_regions(image, min_share=0.0, limit=1_000)
    if not boxes:
        return image
    top, left = min(b[0] for b in boxes), min(b[1] for b in boxes)
    bottom, right = max(b[2] for b in boxes), max(b[3] for b in boxes)
    return cut_out(image, (top, left, bottom, right))


def recognised_in_scene(
    gallery: EmojiGallery, image: np.ndarray, asked: list[int], k: int = 5
) -> list[bool]:
    """For each asked concept index: does some region of ``image`` rank it in the top ``k``?"""
    boxes = emoji_regions(image, limit=max(3, len(asked) + 1))
    if not boxes:
        return [False] * len(asked)
    crops = torch.from_numpy(np.stack([cut_out(image, b) for b in boxes])).permute(0, 3, 1, 2)
    found = gallery.retrieve(crops, cut_outs=True)
    return [any(r.rank_of(c) < k for r in found) for c in asked]


@dataclass(frozen=True, kw_only=True)
class InstrumentAccuracy:
    """The recogniser on real images (shares): lone emoji found at rank 1 and in the top 5,
    with the drawing's own style found; the same with that style left out of the gallery;
    and real two-emoji scenes with both emoji in the top 5 of some region."""

    single_top1: float
    single_top5: float
    single_style: float
    cross_style_top1: float
    cross_style_top5: float
    pairs_both_top5: float


def instrument_accuracy(
    gallery: EmojiGallery, count: int = 400, seed: int = 77
) -> InstrumentAccuracy:
    """The instrument on real images: top-1 / top-5 retrieval of lone emoji at other scales
    and places (scenes of data seed ``seed``); the same with the emoji's own style left out
    of the gallery (only other design teams' drawings of the concept can match, so this
    measures concept features rather than pixel matching); and the share of real two-emoji
    scenes whose two emoji are both found in the top 5 of some region."""
    scenes = gallery.scenes
    singles = scenes.variant(seed=seed, two_object_prob=0.0, three_object_prob=0.0)
    pairs = scenes.variant(seed=seed + 1, two_object_prob=1.0, three_object_prob=0.0)
    index = {c.key: i for i, c in enumerate(scenes.concepts)}
    samples = [singles.sample(i) for i in range(count)]
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2)
    found = gallery.retrieve(images)
    ranks = [r.rank_of(index[s.concepts[0].key]) for r, s in zip(found, samples, strict=True)]
    styles = [r.style == s.style for r, s in zip(found, samples, strict=True)]
    other = gallery.retrieve(images, leave_out=[s.style for s in samples])
    cross = [r.rank_of(index[s.concepts[0].key]) for r, s in zip(other, samples, strict=True)]
    both = []
    for i in range(count // 2):
        sample = pairs.sample(i)
        asked = [index[c.key] for c in sample.concepts]
        both.append(all(recognised_in_scene(gallery, sample.image, asked)))
    return InstrumentAccuracy(
        single_top1=float(np.mean([r < 1 for r in ranks])),
        single_top5=float(np.mean([r < 5 for r in ranks])),
        single_style=float(np.mean(styles)),
        cross_style_top1=float(np.mean([r < 1 for r in cross])),
        cross_style_top5=float(np.mean([r < 5 for r in cross])),
        pairs_both_top5=float(np.mean(both)),
    )


STYLE_NOT_ASKED = "(none)"


@dataclass
class ConceptPrompt:
    prompt: str
    concepts: list[int]  # indices into the gallery's concepts, in prompt order
    style: str  # the style asked, or STYLE_NOT_ASKED


def concept_prompts(gallery: EmojiGallery, count: int, seed: int = 0) -> list[ConceptPrompt]:
    """``count`` one-emoji prompts of distinct concepts ("a cat face", "a rocket, noto
    style"), cycling through no style and each style in turn."""
    rng = random.Random(f"concept-prompts:{seed}")
    picked = rng.sample(range(len(gallery.concepts)), min(count, len(gallery.concepts)))
    styles = [STYLE_NOT_ASKED, *gallery.scenes.styles]
    prompts = []
    for n, index in enumerate(picked):
        style = styles[n % len(styles)]
        text = emoji_phrase(gallery.concepts[index].name)
        if style != STYLE_NOT_ASKED:
            text += f", {style} style"
        prompts.append(ConceptPrompt(text, [index], style))
    return prompts


def scene_prompts(gallery: EmojiGallery, count: int, seed: int = 0) -> list[ConceptPrompt]:
    """``count`` two-emoji prompts of distinct concept pairs ("a cat face and a rocket")."""
    rng = random.Random(f"scene-prompts:{seed}")
    prompts = []
    for _ in range(count):
        a, b = rng.sample(range(len(gallery.concepts)), 2)
        text = (
            f"{emoji_phrase(gallery.concepts[a].name)} and {emoji_phrase(gallery.concepts[b].name)}"
        )
        prompts.append(ConceptPrompt(text, [a, b], STYLE_NOT_ASKED))
    return prompts


def generate_images(
    pipe, prompts: list[str], steps: int, seed: int, guidance: float | None, batch: int = 32
) -> np.ndarray:
    """``(N, H, W, 3)`` uint8: prompt ``i`` sampled with seed ``seed + i``."""
    images = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        seeds = [seed + start + i for i in range(len(chunk))]
        samples = pipe.sample_batch(batch_requests(chunk, seeds, steps=steps, guidance=guidance))
        images += [np.asarray(image, dtype=np.uint8) for image in pipe.images(samples)]
    return np.stack(images)


@dataclass(frozen=True, kw_only=True)
class StyleRecognition:
    """Recognisability of one-emoji images for one style asked (``"overall"``: all): the
    share of ``prompts`` whose asked emoji is retrieved at rank 1 and in the top 5, and the
    share whose nearest real emoji has the asked style (None when no style was asked)."""

    style: str
    prompts: int
    top1: float
    top5: float
    style_match: float | None


@dataclass(frozen=True, kw_only=True)
class SceneRecognition:
    """Two-emoji images (shares of ``prompts``): both asked emoji recognised (top 5 of some
    region), the first, the second, and at least two objects found whatever they show."""

    prompts: int
    both: float
    first: float
    second: float
    two_regions: float


def single_report(
    gallery: EmojiGallery, prompts: list[ConceptPrompt], images: np.ndarray
) -> tuple[list[StyleRecognition], list[int]]:
    """One :class:`StyleRecognition` per style asked, then overall; and each prompt's rank."""
    found = gallery.retrieve(torch.from_numpy(images).permute(0, 3, 1, 2))
    ranks = [r.rank_of(p.concepts[0]) for r, p in zip(found, prompts, strict=True)]
    drawn = [r.style for r in found]
    rows = []
    for style in [STYLE_NOT_ASKED, *gallery.scenes.styles, "overall"]:
        picked = [i for i, p in enumerate(prompts) if style in ("overall", p.style)]
        if not picked:
            continue
        asked = [i for i in picked if prompts[i].style != STYLE_NOT_ASKED]
        rows.append(
            StyleRecognition(
                style=style,
                prompts=len(picked),
                top1=float(np.mean([ranks[i] < 1 for i in picked])),
                top5=float(np.mean([ranks[i] < 5 for i in picked])),
                style_match=(
                    float(np.mean([drawn[i] == prompts[i].style for i in asked])) if asked else None
                ),
            )
        )
    return rows, ranks


def scene_report(
    gallery: EmojiGallery, prompts: list[ConceptPrompt], images: np.ndarray
) -> tuple[SceneRecognition, list[list[bool]]]:
    """The :class:`SceneRecognition` of two-emoji images (regions found by
    :func:`emoji_regions`), and per image whether each asked emoji was recognised."""
    hits = [
        recognised_in_scene(gallery, image, p.concepts)
        for image, p in zip(images, prompts, strict=True)
    ]
    return SceneRecognition(
        prompts=len(prompts),
        both=float(np.mean([all(h) for h in hits])),
        first=float(np.mean([h[0] for h in hits])),
        second=float(np.mean([h[1] for h in hits])),
        two_regions=float(np.mean([len(emoji_regions(image)) >= 2 for image in images])),
    ), hits


def emoji_frechet_distance(gallery: EmojiGallery, images: np.ndarray, real: np.ndarray) -> float:
    """Fréchet distance between ``images`` and ``real`` (both ``(N, H, W, 3)`` uint8) in the
    instrument's feature space (torchmetrics' implementation)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=gallery.net, normalize=False)
    fid.update(torch.from_numpy(real).permute(0, 3, 1, 2), real=True)
    fid.update(torch.from_numpy(images).permute(0, 3, 1, 2), real=False)
    return float(fid.compute())
