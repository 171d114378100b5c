"""The LAION subset of the paper (App. D): selection, download command, and a shard reader.

Selection keeps captions that contain an object name in singular or plural form with no
alphabetic character directly before or after it ("cats" and "cat." match, "catalog" and
"bobcat" do not), then the top-N rows per object by the metadata's similarity score.
Downloading needs internet and ``img2dataset``; :func:`img2dataset_command` writes the
invocation. The resulting webdataset shards (tar files of ``KEY.jpg`` + ``KEY.txt``) are read
by :class:`WebDatasetShards`.

The reader indexes the tar members once and then opens samples by position: training draws
samples by global index (for exact resume and disjoint process shards), which the streaming
``webdataset`` pipeline does not offer.
"""

from __future__ import annotations

import io
import random
import re
import shlex
import tarfile
from pathlib import Path

import torch
from PIL import Image

from ..errors import BcosdiffError
from ..pictures import to_tensor
from .images import preprocess_image

__all__ = [
    "PAPER_OBJECTS",
    "WebDatasetShards",
    "img2dataset_command",
    "object_pattern",
    "plural",
    "select_laion",
]

PAPER_OBJECTS = ("banana", "cat", "goat", "flamingo", "penguin")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def plural(word: str) -> str:
    """English plural for the object names used here (``-es`` after s/x/z/ch/sh)."""
    return word + ("es" if re.search(r"(s|x|z|ch|sh)$", word) else "s")


def object_pattern(word: str) -> re.Pattern:
    """Case-insensitive match of ``word`` or its plural, not touching other letters."""
    forms = "|".join(re.escape(f) for f in sorted({word, plural(word)}, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z])(?:{forms})(?![A-Za-z])", re.IGNORECASE)


def select_laion(
    parquet_files: list[Path],
    objects: tuple[str, ...] = PAPER_OBJECTS,
    top_n: int = 20_000,
    text_column: str = "TEXT",
    score_column: str = "similarity",
    url_column: str = "URL",
):
    """A table (pyarrow) of ``url, caption, object, score`` with the top-N rows per object."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise BcosdiffError("LAION selection needs pyarrow (pip install pyarrow)") from None
    patterns = {obj: object_pattern(obj) for obj in objects}
    best: dict[str, list[tuple[float, str, str]]] = {obj: [] for obj in objects}
    for path in parquet_files:
        try:
            table = pq.read_table(path, columns=[url_column, text_column, score_column])
        except (OSError, KeyError, pa.ArrowInvalid) as exc:
            raise BcosdiffError(f"cannot read {path}: {exc}") from None
        urls, texts, scores = (table.column(c).to_pylist() for c in table.column_names)
        for url, text, score in zip(urls, texts, scores, strict=True):
            if not isinstance(text, str) or score is None or url is None:
                continue
            for obj, pattern in patterns.items():
                if pattern.search(text):
                    best[obj].append((float(score), url, text))
    rows = []
    for obj in objects:
        for score, url, text in sorted(best[obj], key=lambda r: -r[0])[:top_n]:
            rows.append({"url": url, "caption": text, "object": obj, "score": score})
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("url", pa.string()),
                ("caption", pa.string()),
                ("object", pa.string()),
                ("score", pa.float64()),
            ]
        ),
    )


def img2dataset_command(selection: Path, output: Path, size: int = 64) -> str:
    """The download command for a machine with internet (resize as in the paper)."""
    parts = [
        "img2dataset",
        "--url_list",
        str(selection),
        "--input_format",
        "parquet",
        "--url_col",
        "url",
        "--caption_col",
        "caption",
        "--output_format",
        "webdataset",
        "--output_folder",
        str(output),
        "--image_size",
        str(size),
        "--resize_mode",
        "center_crop",
        "--resize_only_if_bigger",
        "False",
        "--processes_count",
        "8",
        "--thread_count",
        "32",
    ]
    return shlex.join(parts)


class WebDatasetShards(torch.utils.data.Dataset):
    """Index-addressable reader of webdataset tar shards: ``{"image", "caption"}``."""

    def __init__(self, shards: list[str | Path], size: int = 64, flip: bool = True, seed: int = 0):
        self.size, self.flip, self.seed = size, flip, seed
        self.items: list[tuple[Path, str, str]] = []  # (shard, image member, text member)
        for shard in sorted(Path(s) for s in shards):
            self.items.extend(self._index(shard))
        if not self.items:
            raise BcosdiffError("the shards hold no image-caption pairs")
        self._open: dict[Path, tarfile.TarFile] = {}

    @staticmethod
    def _index(shard: Path) -> list[tuple[Path, str, str]]:
        try:
            with tarfile.open(shard) as archive:
                names = [m.name for m in archive.getmembers() if m.isfile()]
        except (tarfile.TarError, OSError) as exc:
            raise BcosdiffError(f"{shard} is not a readable tar shard ({exc})") from None
        by_key: dict[str, dict[str, str]] = {}
        for name in names:
            key, _, ext = name.rpartition(".")
            by_key.setdefault(key, {})[ext.lower()] = name
        found = []
        for key in sorted(by_key):
            members = by_key[key]
            image = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
            if image and "txt" in members:
                found.append((shard, image, members["txt"]))
        return found

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict:  # open tar handles do not cross process boundaries
        return {**self.__dict__, "_open": {}}

    def __getitem__(self, index: int) -> dict:
        shard, image_name, text_name = self.items[index % len(self.items)]
        archive = self._open.get(shard)
        if archive is None:
            archive = self._open[shard] = tarfile.open(shard)  # noqa: SIM115 - kept open
        caption = archive.extractfile(text_name).read().decode("utf-8").strip()
        with Image.open(io.BytesIO(archive.extractfile(image_name).read())) as image:
            picture = preprocess_image(image, self.size)
        if self.flip and random.Random(f"flip:{self.seed}:{index}").random() < 0.5:
            picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return {"image": to_tensor(picture), "caption": caption}
