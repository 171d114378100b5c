"""Emoji images from the npm packages of the emoji-data project (real images no one here drew).

``emoji-datasource-twitter`` and ``emoji-datasource-google`` ship 64×64 PNGs under
``img/<set>/64/`` and an ``emoji.json`` catalogue with names and short names. The import reads
a package tarball (fetched with ``npm pack`` or given by the user) and writes an image folder
(:mod:`bcosdiff.data.images`) with captions from the names. The images are never committed.

``openmoji`` is not supported: its npm package ships SVG only, and rasterising needs a native
library outside this project's dependencies.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import BcosdiffError

_SAFE_NAME = re.compile(r"[0-9a-zA-Z_-]+\.png")

__all__ = ["EMOJI_SETS", "EmojiSet", "emoji_caption", "import_emoji", "npm_pack"]


@dataclass(frozen=True)
class EmojiSet:
    name: str
    package: str
    image_dir: str  # inside the tarball's "package/" directory
    licence: str  # licence of the artwork (the package's code is MIT)


EMOJI_SETS = {
    "twitter": EmojiSet(
        "twitter",
        "emoji-datasource-twitter",
        "img/twitter/64",
        "CC-BY-4.0 (Twemoji artwork, Twitter Inc. and contributors)",
    ),
    "google": EmojiSet(
        "google",
        "emoji-datasource-google",
        "img/google/64",
        "Apache-2.0 (Noto Emoji artwork, Google)",
    ),
}


def emoji_caption(entry: dict) -> str:
    """A caption from the catalogue entry: its name in lower case ("cat face")."""
    name = entry.get("name") or (entry.get("short_name") or "").replace("_", " ")
    return re.sub(r"\s+", " ", name.lower()).strip()


def npm_pack(package: str, destination: Path) -> Path:
    """Download ``package``'s tarball with ``npm pack`` into ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["npm", "pack", package, "--pack-destination", str(destination), "--silent"],
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
        )
    except FileNotFoundError:
        raise BcosdiffError("npm is not installed; pass the tarball with --tarball") from None
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr or "").strip().splitlines()[-1:] or ["failed"]
        raise BcosdiffError(f"npm pack {package}: {last[0]}") from None
    return destination / done.stdout.strip().splitlines()[-1]


def import_emoji(
    out: Path, sets: list[str], tarballs: dict[str, Path] | None = None
) -> dict[str, int]:
    """Write ``out/images/<set>/*.png`` and ``out/metadata.jsonl``; return counts per set."""
    tarballs = dict(tarballs or {})
    unknown = sorted(set(sets) - set(EMOJI_SETS))
    if unknown:
        raise BcosdiffError(f"unknown emoji set(s) {unknown}; choose from {sorted(EMOJI_SETS)}")
    out = Path(out)
    rows, counts = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in sets:
            spec = EMOJI_SETS[name]
            tarball = tarballs.get(name) or npm_pack(spec.package, Path(scratch))
            counts[name] = _extract(spec, Path(tarball), out, rows)
    lines = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    (out / "metadata.jsonl").write_text(lines, encoding="utf-8")
    return counts


def _extract(spec: EmojiSet, tarball: Path, out: Path, rows: list[dict]) -> int:
    if not tarball.is_file():
        raise BcosdiffError(f"tarball not found: {tarball}")
    try:
        archive = tarfile.open(tarball, "r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise BcosdiffError(f"{tarball} is not a readable tarball ({exc})") from None
    with archive:
        try:
            catalogue = json.load(archive.extractfile("package/emoji.json"))
        except KeyError:
            raise BcosdiffError(f"{tarball} has no package/emoji.json") from None
        members = {m.name: m for m in archive.getmembers() if m.isfile()}
        target = out / "images" / spec.name
        target.mkdir(parents=True, exist_ok=True)
        count = 0
        for entry in catalogue:
            image = str(entry.get("image", ""))
            if not _SAFE_NAME.fullmatch(image):
                continue  # never let a catalogue entry name a path outside the output
            member = members.get(f"package/{spec.image_dir}/{image}")
            if member is None or not entry.get(f"has_img_{spec.name}", True):
                continue
            data = archive.extractfile(member).read()
            if not data.startswith(b"\x89PNG"):
                continue
            (target / entry["image"]).write_bytes(data)
            rows.append(
                {
                    "file_name": f"images/{spec.name}/{entry['image']}",
                    "text": emoji_caption(entry),
                    "set": spec.name,
                    "licence": spec.licence,
                    "short_names": entry.get("short_names", []),
                    "category": entry.get("category"),
                }
            )
            count += 1
    return count
