"""Ground truth for the faithfulness benchmark: prompts whose words are known to describe
given objects, and a reader that finds those objects in a generated image.

Two benchmarks share one interface:

``held_out=False`` draws prompts from the training templates instead (flag calibration).

* :class:`ShapesTruth` — held-out shapes prompts; the pixel checker (validated on dataset
  images) finds the objects and their masks and says whether each shows its asked colour and
  shape. Key words: colour and shape words.
* :class:`EmojiTruth` — held-out emoji scene prompts; the image's departures from its
  background are split into regions, each region is retrieved among the real emoji
  (:mod:`bcosdiff.evaluation.emoji`), and every asked emoji is matched to the region that
  ranks it best. Its mask is that region's foreground; it counts as shown when the region
  ranks it in the top 5. Key words: the words of the emoji's name.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from ...data.emoji_scenes import HELD_OUT_EMOJI_TEMPLATES, EmojiScenes
from ...data.shapes import COLOURS, HELD_OUT_TEMPLATES, SHAPES, TRAIN_TEMPLATES, ShapesDataset
from ..checker import ShapeChecker

__all__ = ["EmojiTruth", "FoundObject", "ShapesTruth", "TruthPrompt"]


@dataclass
class TruthPrompt:
    caption: str
    words: list[str]  # caption words (the unit of the ground truth)
    word_objects: list[int | None]  # asked object each word describes, or None
    objects: int  # number of asked objects
    key_words: list[int]  # indices of words whose presence in the image can be checked
    sample: object  # the data set's sample (ShapeSample / EmojiSample)


@dataclass
class FoundObject:
    mask: np.ndarray  # (H, W) bool: where the image shows the object
    shown: bool  # the object is drawn as asked
    words_shown: dict[int, bool]  # key-word index -> whether that attribute is shown


class ShapesTruth:
    name = "shapes"
    key_words_label = "colour/shape words"

    def __init__(
        self, size: int, seed: int = 0, two_object_share: float = 0.5, held_out: bool = True
    ):
        templates = HELD_OUT_TEMPLATES if held_out else TRAIN_TEMPLATES
        self.dataset = ShapesDataset(
            size=size, seed=seed, two_object_prob=two_object_share, templates=templates
        )
        self.checker = ShapeChecker(size)

    def prompt(self, index: int) -> TruthPrompt:
        sample = self.dataset.sample(index)
        keys = [
            j
            for j, (w, k) in enumerate(zip(sample.words, sample.word_objects, strict=True))
            if k is not None and w.lower() in (*COLOURS, *SHAPES)
        ]
        return TruthPrompt(
            sample.caption, sample.words, sample.word_objects, len(sample.objects), keys, sample
        )

    def two_distinct(self, prompt: TruthPrompt) -> bool:
        """Two asked objects of distinct colours and distinct shapes (binding prompts)."""
        objects = prompt.sample.objects
        colours, shapes = {o.colour for o in objects}, {o.shape for o in objects}
        return len(objects) == len(colours) == len(shapes) == 2

    def read(self, image: np.ndarray, prompt: TruthPrompt) -> list[FoundObject | None]:
        objects = prompt.sample.objects
        regions = self.checker.regions(image, max_objects=len(objects))
        found: list[FoundObject | None] = []
        free = list(range(len(regions)))
        for k, obj in enumerate(objects):
            if not free:
                found.append(None)
                continue

            def agreement(i, obj=obj):
                detected = regions[i][0]
                return (detected.colour == obj.colour) + (detected.shape == obj.shape)

            best = max(free, key=agreement)  # ties keep the larger region
            free.remove(best)
            detected, mask = regions[best]
            words_shown = {}
            for j in prompt.key_words:
                if prompt.word_objects[j] != k:
                    continue
                word = prompt.words[j].lower()
                if word == obj.colour:
                    words_shown[j] = detected.colour == obj.colour
                elif word == obj.shape:
                    words_shown[j] = detected.shape == obj.shape
            shown = (detected.colour, detected.shape) == (obj.colour, obj.shape)
            found.append(FoundObject(mask, shown, words_shown))
        return found


class EmojiTruth:
    name = "emoji"
    key_words_label = "emoji name words"

    def __init__(
        self,
        gallery,
        seed: int = 0,
        two_object_share: float = 0.5,
        top: int = 5,
        held_out: bool = True,
    ):
        self.gallery, self.top = gallery, top
        self.index = {c.key: i for i, c in enumerate(gallery.concepts)}
        scenes: EmojiScenes = gallery.scenes
        self.scenes = scenes.variant(
            seed=seed,
            two_object_prob=two_object_share,
            three_object_prob=0.0,
            keyword_prob=0.0,
            **({"templates": HELD_OUT_EMOJI_TEMPLATES} if held_out else {}),
        )

    @classmethod
    def from_import(
        cls, root, seed: int = 0, two_object_share: float = 0.5, held_out: bool = True
    ) -> EmojiTruth:
        """Ground truth from the emoji import at ``root`` (``bcosdiff data emoji``), read by
        the bundled feature extractor; an import of other emoji is refused."""
        from ...errors import BcosdiffError
        from ..emoji import EmojiGallery, load_emoji_features

        net = load_emoji_features()
        scenes = EmojiScenes(root)
        if [c.key for c in scenes.concepts] != net.concept_keys:
            raise BcosdiffError(
                f"{root} holds other emoji than the feature extractor was trained on"
            )
        return cls(EmojiGallery(net, scenes), seed, two_object_share, held_out=held_out)

    def prompt(self, index: int) -> TruthPrompt:
        sample = self.scenes.sample(index)
        keys = [j for j, k in enumerate(sample.word_objects) if k is not None]
        return TruthPrompt(
            sample.caption, sample.words, sample.word_objects, len(sample.concepts), keys, sample
        )

    def two_distinct(self, prompt: TruthPrompt) -> bool:
        """Two asked emoji of distinct concepts (binding prompts)."""
        concepts = prompt.sample.concepts
        return len(concepts) == len({c.key for c in concepts}) == 2

    def read(self, image: np.ndarray, prompt: TruthPrompt) -> list[FoundObject | None]:
        from ...pictures import departure
        from ..emoji import FOREGROUND_THRESHOLD, cut_out, emoji_regions

        asked = [self.index[c.key] for c in prompt.sample.concepts]
        boxes = emoji_regions(image, limit=len(asked) + 1)
        if not boxes:
            return [None] * len(asked)
        crops = np.stack([cut_out(image, box) for box in boxes])
        rankings = self.gallery.retrieve(torch.from_numpy(crops).permute(0, 3, 1, 2), cut_outs=True)
        distance = departure(image)
        ranks = [[r.rank_of(c) for c in asked] for r in rankings]  # [box][asked]
        worst = len(self.gallery.concepts)
        options = [*range(len(boxes)), *[None] * len(asked)]
        assignment = min(  # each asked emoji to a distinct region (or none), fewest rank sum
            (p for p in itertools.permutations(options, len(asked))),
            key=lambda p: sum(worst if b is None else ranks[b][k] for k, b in enumerate(p)),
        )
        found: list[FoundObject | None] = []
        for k, box in enumerate(assignment):
            if box is None:
                found.append(None)
                continue
            top, left, bottom, right = boxes[box]
            mask = np.zeros(image.shape[:2], bool)
            region = distance[top:bottom, left:right] > FOREGROUND_THRESHOLD
            mask[top:bottom, left:right] = region
            shown = ranks[box][k] < self.top
            words = {j: shown for j in prompt.key_words if prompt.word_objects[j] == k}
            found.append(FoundObject(mask, shown, words))
        return found
