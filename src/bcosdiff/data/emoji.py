"""Emoji artwork from npm: real images no one here drew, with exact masks from their alpha.

Four independent design teams draw the same Unicode emoji. Their artwork ships on npm:

- SVG, in Iconify JSON (``package/icons.json`` bodies keyed by kebab-case names, and
  ``package/chars.json`` mapping code points to those names): ``@iconify-json/fluent-emoji-flat``
  (Microsoft, MIT), ``@iconify-json/noto`` (Google, Apache-2.0), ``@iconify-json/openmoji``
  (OpenMoji, CC-BY-SA-4.0) and ``@iconify-json/twemoji`` (Twitter, CC-BY-4.0). The SVG is
  rasterised by resvg (``resvg-py``), a complete SVG renderer.
- PNG at 64×64, ``emoji-datasource-twitter`` / ``-google``: the Twemoji and Noto artwork again,
  rasterised by its makers. They are importable (``sets=["twitter", "google"]``) but not
  imported by default: they would count the same drawings twice.

Names and keywords come from ``emojilib`` (MIT): the CLDR name (``cat face``) and keywords
(``animal``, ``pet``, ...). A concept is one emoji (its code points without variation
selectors). By default only concepts drawn by every imported set are kept, so that each
concept exists in every style; skin-tone variants, flags and keycaps are left out (they are
the same drawing with another tone, a flag's text-free stripes, or a character in a box).

The import writes an image folder (:mod:`bcosdiff.data.images`): ``images/<style>/<key>.png``
(RGBA, transparent background), ``masks/<style>/<key>.png`` (alpha ≥ 0.5, the ground truth
for every word of the emoji's name) and ``metadata.jsonl`` with the style, concept key,
name, keywords, category and the artwork's licence per image. Images are never committed;
they are fetched with ``npm pack`` (or read from tarballs given by the user).
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import BcosdiffError

__all__ = [
    "DEFAULT_SETS",
    "EMOJI_SETS",
    "KEYWORDS_PACKAGE",
    "EmojiSet",
    "concept_key",
    "import_emoji",
    "npm_pack",
    "rasterise_svg",
]

_SAFE_NAME = re.compile(r"[0-9a-zA-Z_-]+\.png")
# Skin-tone modifiers, regional indicators (flags), tag sequences (subdivision flags), keycap.
_LEFT_OUT = re.compile(r"1f3f[b-f]|1f1[e-f][0-9a-f]|e00[0-7][0-9a-f]|20e3")
KEYWORDS_PACKAGE = "emojilib"


@dataclass(frozen=True)
class EmojiSet:
    name: str  # the style word used in captions
    package: str  # npm package
    kind: str  # "svg" (Iconify JSON) or "png" (emoji-datasource)
    licence: str  # licence of the artwork, with its holder
    image_dir: str = ""  # for "png": inside the tarball's package/ directory


EMOJI_SETS = {
    "fluent": EmojiSet(
        "fluent",
        "@iconify-json/fluent-emoji-flat",
        "svg",
        "MIT (Fluent Emoji artwork, Microsoft Corporation)",
    ),
    "noto": EmojiSet(
        "noto", "@iconify-json/noto", "svg", "Apache-2.0 (Noto Emoji artwork, Google Inc.)"
    ),
    "openmoji": EmojiSet(
        "openmoji",
        "@iconify-json/openmoji",
        "svg",
        "CC-BY-SA-4.0 (OpenMoji artwork, HfG Schwäbisch Gmünd and contributors)",
    ),
    "twemoji": EmojiSet(
        "twemoji", "@iconify-json/twemoji", "svg", "CC-BY-4.0 (Twemoji artwork, Twitter Inc.)"
    ),
    "twitter": EmojiSet(
        "twitter",
        "emoji-datasource-twitter",
        "png",
        "CC-BY-4.0 (Twemoji artwork, Twitter Inc. and contributors)",
        "img/twitter/64",
    ),
    "google": EmojiSet(
        "google",
        "emoji-datasource-google",
        "png",
        "Apache-2.0 (Noto Emoji artwork, Google)",
        "img/google/64",
    ),
}
DEFAULT_SETS = ("fluent", "noto", "openmoji", "twemoji")


def concept_key(codepoints: str) -> str:
    """``"1F431"`` / ``"2764-fe0f"`` -> ``"1f431"`` / ``"2764"``: lower-case hex joined by
    ``-``, without the variation selector FE0F (sets differ in writing it)."""
    parts = re.split(r"[-_ ]", codepoints.strip().lower())
    return "-".join(p for p in parts if p and p != "fe0f")


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
        raise BcosdiffError("npm is not installed; pass the tarballs with --tarball") from None
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr or "").strip().splitlines()[-1:] or ["failed"]
        raise BcosdiffError(f"npm pack {package}: {last[0]}") from None
    except subprocess.TimeoutExpired:
        raise BcosdiffError(f"npm pack {package} timed out (no network?)") from None
    return destination / done.stdout.strip().splitlines()[-1]


def rasterise_svg(svg: str, size: int) -> np.ndarray:
    """``(size, size, 4)`` uint8 RGBA of an SVG document, rendered by resvg."""
    import resvg_py  # Rust wheel; imported here so that the rest of bcosdiff does not need it

    try:
        png = resvg_py.svg_to_bytes(svg_string=svg, width=size, height=size)
    except ValueError as exc:
        raise BcosdiffError(f"SVG could not be rendered: {exc}") from None
    with Image.open(io.BytesIO(bytes(png))) as image:
        return np.asarray(image.convert("RGBA"), dtype=np.uint8).copy()


def _iconify_svg(icons: dict, name: str) -> str | None:
    """The SVG document of Iconify icon ``name`` (aliases resolved, flips applied)."""
    flip_h = flip_v = False
    seen = set()
    while name in icons.get("aliases", {}) and name not in seen:
        seen.add(name)
        alias = icons["aliases"][name]
        flip_h ^= bool(alias.get("hFlip"))
        flip_v ^= bool(alias.get("vFlip"))
        name = alias.get("parent", "")
    icon = icons.get("icons", {}).get(name)
    if not isinstance(icon, dict) or not isinstance(icon.get("body"), str):
        return None
    left, top = icon.get("left", icons.get("left", 0)), icon.get("top", icons.get("top", 0))
    width = icon.get("width", icons.get("width", 16))
    height = icon.get("height", icons.get("height", 16))
    flip_h ^= bool(icon.get("hFlip"))
    flip_v ^= bool(icon.get("vFlip"))
    body = icon["body"]
    if flip_h or flip_v:
        sx, sy = (-1 if flip_h else 1), (-1 if flip_v else 1)
        tx, ty = (2 * left + width if flip_h else 0), (2 * top + height if flip_v else 0)
        body = f'<g transform="translate({tx} {ty}) scale({sx} {sy})">{body}</g>'
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'viewBox="{left} {top} {width} {height}">{body}</svg>'
    )


def _open(tarball: Path) -> tarfile.TarFile:
    if not Path(tarball).is_file():
        raise BcosdiffError(f"tarball not found: {tarball}")
    try:
        return tarfile.open(tarball, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise BcosdiffError(f"{tarball} is not a readable tarball ({exc})") from None


def _read_json(archive: tarfile.TarFile, member: str, tarball: Path):
    try:
        handle = archive.extractfile(member)
    except KeyError:
        handle = None
    if handle is None:
        raise BcosdiffError(f"{tarball} has no {member}")
    try:
        return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BcosdiffError(f"{tarball}: {member} is not valid JSON ({exc})") from None


def _keywords(tarball: Path) -> dict[str, tuple[str, list[str]]]:
    """emojilib: concept key -> (name, keywords), keywords as lower-case words or phrases."""
    with _open(tarball) as archive:
        table = _read_json(archive, "package/dist/emoji-en-US.json", tarball)
    out = {}
    for char, words in table.items():
        if not words or not isinstance(words, list):
            continue
        key = concept_key("-".join(f"{ord(c):x}" for c in char))
        name = str(words[0]).replace("_", " ").strip().lower()
        keywords: list[str] = []
        for word in words[1:]:
            word = str(word).replace("_", " ").strip().lower()
            if re.fullmatch(r"[a-z]+( [a-z]+)*", word) and word != name and word not in keywords:
                keywords.append(word)
        out[key] = (name, keywords)
    return out


@dataclass
class _Drawing:
    key: str
    name: str  # the artwork's own name for it
    category: str | None
    load: object  # () -> (H, W, 4) uint8 RGBA


def _svg_drawings(tarball: Path, size: int) -> dict[str, _Drawing]:
    with _open(tarball) as archive:
        icons = _read_json(archive, "package/icons.json", tarball)
        chars = _read_json(archive, "package/chars.json", tarball)
        try:
            metadata = _read_json(archive, "package/metadata.json", tarball)
        except BcosdiffError:
            metadata = {}
    category = {n: c for c, names in metadata.get("categories", {}).items() for n in names}
    drawings = {}
    for codepoints, name in chars.items():
        key = concept_key(codepoints)
        svg = _iconify_svg(icons, name)
        if svg is None or key in drawings:
            continue
        drawings[key] = _Drawing(
            key,
            name.replace("-", " "),
            category.get(name),
            lambda svg=svg: rasterise_svg(svg, size),
        )
    return drawings


def _png_drawings(spec: EmojiSet, tarball: Path) -> dict[str, _Drawing]:
    drawings = {}
    with _open(tarball) as archive:
        catalogue = _read_json(archive, "package/emoji.json", tarball)
        members = {m.name: m for m in archive.getmembers() if m.isfile()}
        for entry in catalogue:
            image = str(entry.get("image", ""))
            if not _SAFE_NAME.fullmatch(image) or not entry.get(f"has_img_{spec.name}", True):
                continue  # never let a catalogue entry name a path outside the package
            member = members.get(f"package/{spec.image_dir}/{image}")
            if member is None:
                continue
            data = archive.extractfile(member).read()

            def load(data=data):
                with Image.open(io.BytesIO(data)) as picture:
                    return np.asarray(picture.convert("RGBA"), dtype=np.uint8).copy()

            key = concept_key(str(entry.get("unified") or image.removesuffix(".png")))
            name = str(entry.get("name") or "").lower()
            drawings[key] = _Drawing(key, name, entry.get("category"), load)
    return drawings


def import_emoji(
    out: Path,
    *,
    sets: list[str] | tuple[str, ...] = DEFAULT_SETS,
    tarballs: dict[str, Path] | None = None,
    size: int = 64,
    common_only: bool = True,
) -> dict[str, int]:
    """Import emoji sets into the image folder ``out``; return the image count per set.

    ``tarballs`` maps a set name (or ``"emojilib"``) to an npm tarball already at hand; the
    rest are fetched with ``npm pack``. SVG sets are rasterised at ``size`` pixels.
    ``common_only`` keeps the concepts that every imported set draws.
    """
    tarballs = dict(tarballs or {})
    unknown = sorted(set(sets) - set(EMOJI_SETS))
    if unknown or not sets:
        raise BcosdiffError(f"unknown emoji set(s) {unknown}; choose from {sorted(EMOJI_SETS)}")
    if size < 8:
        raise BcosdiffError("size must be at least 8 pixels")
    out = Path(out)
    with tempfile.TemporaryDirectory() as scratch:
        paths = {
            name: Path(tarballs.get(name) or npm_pack(EMOJI_SETS[name].package, Path(scratch)))
            for name in sets
        }
        lib_path = tarballs.get(KEYWORDS_PACKAGE) or npm_pack(KEYWORDS_PACKAGE, Path(scratch))
        keywords = _keywords(Path(lib_path))
        drawings = {
            name: (
                _svg_drawings(paths[name], size)
                if EMOJI_SETS[name].kind == "svg"
                else _png_drawings(EMOJI_SETS[name], paths[name])
            )
            for name in sets
        }
        keys = [set(d) for d in drawings.values()]
        chosen = set.intersection(*keys) if common_only else set.union(*keys)
        chosen = sorted(k for k in chosen if not _LEFT_OUT.search(k))
        rows, counts = [], {}
        for name in sets:
            counts[name] = _write_set(EMOJI_SETS[name], drawings, chosen, keywords, out, rows)
    text = "".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows)
    (out / "metadata.jsonl").write_text(text, encoding="utf-8")
    return counts


def _category(drawings: dict[str, dict[str, _Drawing]], key: str) -> str | None:
    for per_set in drawings.values():
        if key in per_set and per_set[key].category:
            return per_set[key].category
    return None


def _write_set(spec, drawings, chosen, keywords, out: Path, rows: list[dict]) -> int:
    (out / "images" / spec.name).mkdir(parents=True, exist_ok=True)
    (out / "masks" / spec.name).mkdir(parents=True, exist_ok=True)
    count = 0
    for key in chosen:
        drawing = drawings[spec.name].get(key)
        if drawing is None:
            continue
        rgba = drawing.load()
        if rgba[..., 3].max() == 0:
            continue  # nothing drawn
        name, words = keywords.get(key, (drawing.name, []))
        image_file = f"images/{spec.name}/{key}.png"
        mask_file = f"masks/{spec.name}/{key}.png"
        Image.fromarray(rgba, "RGBA").save(out / image_file)
        Image.fromarray(((rgba[..., 3] >= 128) * 255).astype(np.uint8), "L").save(out / mask_file)
        rows.append(
            {
                "file_name": image_file,
                "mask": mask_file,
                "text": f"{'an' if name[:1] in 'aeiou' else 'a'} {name}",
                "name": name,
                "keywords": words,
                "concept": key,
                "emoji": "".join(chr(int(h, 16)) for h in key.split("-")),
                "category": _category(drawings, key),
                "style": spec.name,
                "licence": spec.licence,
            }
        )
        count += 1
    return count
