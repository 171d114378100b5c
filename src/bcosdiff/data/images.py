"""Image-caption data from files: the Hugging Face "imagefolder" layout and preprocessing.

A folder holds images and a ``metadata.jsonl`` with one JSON object per line carrying at
least ``file_name`` (relative to the folder) and ``text`` (the caption). Preprocessing follows
the paper (App. D): bilinear resize so the shorter side is ``size``, centre crop to
``size × size`` and, for training, a random horizontal flip. Transparent images (emoji) are
composited onto white. The flip is a function of ``(seed, index)``, so resumed training
sees the same augmentations.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from PIL import Image

from ..errors import BcosdiffError
from ..pictures import to_tensor

__all__ = ["ImageFolderDataset", "preprocess_image", "read_metadata"]


def preprocess_image(image: Image.Image, size: int) -> Image.Image:
    """Bilinear resize of the shorter side to ``size``, then a centre crop; RGB on white."""
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    image = image.convert("RGB")
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def read_metadata(root: Path) -> list[dict]:
    path = Path(root) / "metadata.jsonl"
    if not path.is_file():
        raise BcosdiffError(f"{path} is missing (expected one JSON object per line)")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BcosdiffError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
            raise BcosdiffError(f"{path}:{number}: needs a string 'file_name'")
        if not isinstance(row.get("text"), str):
            raise BcosdiffError(f"{path}:{number}: needs a string 'text'")
        if not (Path(root) / row["file_name"]).is_file():
            raise BcosdiffError(f"{path}:{number}: image {row['file_name']} not found")
        rows.append(row)
    if not rows:
        raise BcosdiffError(f"{path} lists no images")
    return rows


class ImageFolderDataset(torch.utils.data.Dataset):
    """``dataset[i] -> {"image": (3, size, size) in [0, 1], "caption": str}``."""

    def __init__(self, root: str | Path, size: int = 32, flip: bool = True, seed: int = 0):
        self.root = Path(root)
        self.size = size
        self.flip = flip
        self.seed = seed
        self.rows = read_metadata(self.root)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index % len(self.rows)]
        with Image.open(self.root / row["file_name"]) as image:
            picture = preprocess_image(image, self.size)
        if self.flip and random.Random(f"flip:{self.seed}:{index}").random() < 0.5:
            picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return {"image": to_tensor(picture), "caption": row["text"]}
