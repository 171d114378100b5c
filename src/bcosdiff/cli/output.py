"""What the commands write: files (a failed write is one clear error) and notes on stderr."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from ..errors import BcosdiffError


@contextmanager
def writing(target: Path):
    """Turn a failed write under ``target`` into one clear error line."""
    try:
        yield
    except OSError as exc:
        raise BcosdiffError(f"cannot write {target}: {exc.strerror or exc}") from None


IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def image_format(out: Path) -> str:
    """The image format named by ``out``'s suffix; anything else is refused."""
    kind = IMAGE_FORMATS.get(out.suffix.lower())
    if kind is None:
        raise BcosdiffError(
            f"cannot tell the image format from {out.name!r}: use .png, .jpg, .jpeg or .webp"
        )
    return kind


def save_image(image, out: Path) -> None:
    """Save a PIL image in the format its suffix names, creating the folder."""
    kind = image_format(out)
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        options = {"quality": 95} if kind in ("JPEG", "WEBP") else {}
        image.save(out, format=kind, **options)


def note(message: str, kind: str = "note") -> None:
    """One ``bcosdiff: KIND: message`` line on stderr."""
    print(f"bcosdiff: {kind}: {message}", file=sys.stderr)
