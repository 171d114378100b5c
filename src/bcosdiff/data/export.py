"""Export shapes samples as an image folder with ground truth (for inspection and reuse)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from .shapes import ShapesDataset

__all__ = ["export_shapes"]


def export_shapes(out: Path, *, count: int, size: int, seed: int, two_object_prob: float) -> None:
    """``out/images/N.png``, ``out/masks/N_K.png`` (object K) and ``out/metadata.jsonl``."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    dataset = ShapesDataset(size=size, seed=seed, two_object_prob=two_object_prob)
    lines = []
    for index in range(count):
        sample = dataset.sample(index)
        Image.fromarray(sample.image).save(out / "images" / f"{index:06d}.png")
        masks = []
        for k, mask in enumerate(sample.masks):
            name = f"masks/{index:06d}_{k}.png"
            Image.fromarray(mask.astype("uint8") * 255).save(out / name)
            masks.append(name)
        lines.append(
            json.dumps(
                {
                    "file_name": f"images/{index:06d}.png",
                    "text": sample.caption,
                    "words": sample.words,
                    "word_objects": sample.word_objects,
                    "masks": masks,
                    "objects": [
                        {
                            "shape": o.shape,
                            "colour": o.colour,
                            "size": o.size,
                            "position": o.position,
                        }
                        for o in sample.objects
                    ],
                }
            )
        )
    (out / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
