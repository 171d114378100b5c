"""Captions to evaluate on: drawn from the shapes generator or read from an image folder."""

from __future__ import annotations

import random
from pathlib import Path

from .images import read_metadata
from .shapes import HELD_OUT_TEMPLATES, TRAIN_TEMPLATES, ShapesDataset

__all__ = ["load_captions"]


def load_captions(source: str, count: int, seed: int = 0, held_out: bool = False) -> list[str]:
    """``count`` captions from ``"shapes"`` (the generator; ``held_out`` picks the caption
    templates never used in training), from an emoji import (its scenes' captions, likewise)
    or from an image folder's ``metadata.jsonl`` (a seeded sample without replacement when
    it holds more than ``count``)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    if source == "shapes":
        templates = HELD_OUT_TEMPLATES if held_out else TRAIN_TEMPLATES
        dataset = ShapesDataset(seed=seed, templates=templates)
        return [dataset.sample(i).caption for i in range(count)]
    rows = read_metadata(Path(source))
    if all("concept" in row for row in rows):  # an emoji import: captions of its scenes
        from .emoji_scenes import HELD_OUT_EMOJI_TEMPLATES, EmojiScenes

        scenes = EmojiScenes(Path(source), seed=seed)
        if held_out:
            scenes = scenes.variant(templates=HELD_OUT_EMOJI_TEMPLATES)
        return [scenes.sample(i).caption for i in range(count)]
    texts = [row["text"] for row in rows]
    if len(texts) > count:
        texts = random.Random(seed).sample(texts, count)
    return texts
