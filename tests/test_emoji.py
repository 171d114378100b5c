"""Emoji data: the npm import (SVG and PNG artwork, keywords, masks) and the scenes."""

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from bcosdiff.data.emoji import concept_key, import_emoji, npm_pack
from bcosdiff.data.emoji_scenes import EmojiScenes, emoji_phrase
from bcosdiff.errors import BcosdiffError
from bcosdiff.training import build_dataset

# Left half red, on a transparent 16x16 canvas: mirroring moves it to the right half.
LEFT_RED = '<rect x="0" y="0" width="8" height="16" fill="#ff0000"/>'
DISC = '<circle cx="8" cy="8" r="6" fill="#{}"/>'


def _tar(path, files):
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            data = data if isinstance(data, bytes) else json.dumps(data).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _iconify(path, icons, chars, aliases=None, categories=None):
    return _tar(
        path,
        {
            "package/icons.json": {
                "prefix": "x",
                "width": 16,
                "height": 16,
                "icons": {name: {"body": body} for name, body in icons.items()},
                "aliases": aliases or {},
            },
            "package/chars.json": chars,
            "package/metadata.json": {"categories": categories or {}},
        },
    )


@pytest.fixture
def tarballs(tmp_path):
    lib = {
        "🐱": ["cat_face", "animal", "meow", "pet", ":3"],
        "🚀": ["rocket", "launch", "outer_space"],
        "🍎": ["red_apple", "fruit"],
        "👍": ["thumbs_up", "yes"],
    }
    cats = {"Animals & Nature": ["cat-face"], "Travel & Places": ["rocket"]}
    cats["Food & Drink"] = ["red-apple"]
    cats["People & Body"] = ["thumbs-up", "thumbs-up-dark"]
    first = _iconify(
        tmp_path / "a.tgz",
        {
            "cat-face": DISC.format("ffaa00"),
            "rocket": LEFT_RED,
            "red-apple": DISC.format("dd0000"),
            "thumbs-up": DISC.format("ffcc00"),
            "thumbs-up-dark": DISC.format("553300"),
        },
        {
            "1f431": "cat-face",
            "1f680": "rocket",
            "1f34e": "red-apple",
            "1f44d": "thumbs-up",
            "1f44d-1f3ff": "thumbs-up-dark",
        },
        categories=cats,
    )
    # The second set draws the rocket as a mirrored alias and has no apple.
    second = _iconify(
        tmp_path / "b.tgz",
        {
            "cat-face": DISC.format("ff8800"),
            "rocket-left": LEFT_RED,
            "thumbs-up": DISC.format("ffdd00"),
        },
        {"1f431-fe0f": "cat-face", "1f680": "rocket", "1f44d": "thumbs-up"},
        aliases={"rocket": {"parent": "rocket-left", "hFlip": True}},
    )
    keywords = _tar(tmp_path / "lib.tgz", {"package/dist/emoji-en-US.json": lib})
    return {"fluent": first, "noto": second, "emojilib": keywords}


def _rows(root):
    return [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]


def test_concept_keys_drop_the_variation_selector():
    assert concept_key("2764-FE0F") == "2764" == concept_key("2764")
    assert concept_key("1F431") == "1f431"


def test_import_rasterises_svg_and_keeps_the_concepts_every_set_draws(tmp_path, tarballs):
    out = tmp_path / "emoji"
    counts = import_emoji(out, ["fluent", "noto"], tarballs, size=16)
    assert counts == {"fluent": 3, "noto": 3}  # no apple in noto, no skin-tone variant
    rows = _rows(out)
    assert sorted({r["name"] for r in rows}) == ["cat face", "rocket", "thumbs up"]
    cat = next(r for r in rows if r["name"] == "cat face" and r["style"] == "noto")
    assert cat["keywords"] == ["animal", "meow", "pet"]  # ":3" is no word
    assert cat["text"] == "a cat face" and cat["emoji"] == "🐱"
    assert cat["category"] == "Animals & Nature"  # from the set that has categories
    assert cat["licence"].startswith("Apache-2.0")
    rocket = next(r for r in rows if r["name"] == "rocket" and r["style"] == "fluent")
    assert rocket["keywords"] == ["launch", "outer space"]
    # SVG through the rasteriser: the left half is opaque red, the right half transparent.
    pixels = np.asarray(Image.open(out / rocket["file_name"]))
    assert pixels.shape == (16, 16, 4)
    assert (pixels[:, :7, 3] == 255).all() and (pixels[:, 9:, 3] == 0).all()
    assert (pixels[:, :7, :3] == (255, 0, 0)).all()
    mask = np.asarray(Image.open(out / rocket["mask"])) > 0
    assert np.array_equal(mask, pixels[..., 3] >= 128)
    # The hFlip alias mirrors its parent.
    mirrored = next(r for r in rows if r["name"] == "rocket" and r["style"] == "noto")
    flipped = np.asarray(Image.open(out / mirrored["file_name"]))
    assert (flipped[:, 9:, 3] == 255).all() and (flipped[:, :7, 3] == 0).all()


def test_import_of_every_concept_and_bad_input(tmp_path, tarballs):
    counts = import_emoji(tmp_path / "all", ["fluent", "noto"], tarballs, 16, common_only=False)
    assert counts == {"fluent": 4, "noto": 3}
    with pytest.raises(BcosdiffError, match="unknown emoji"):
        import_emoji(tmp_path / "x", ["wingdings"], tarballs)
    with pytest.raises(BcosdiffError, match="tarball not found"):
        import_emoji(tmp_path / "x", ["fluent"], {**tarballs, "fluent": tmp_path / "missing.tgz"})
    broken = _tar(tmp_path / "broken.tgz", {"package/icons.json": b"{not json"})
    with pytest.raises(BcosdiffError, match="not valid JSON"):
        import_emoji(tmp_path / "x", ["fluent"], {**tarballs, "fluent": broken})


def test_npm_missing_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on it
    with pytest.raises(BcosdiffError, match="npm is not installed"):
        npm_pack("emojilib", tmp_path)


def test_png_sets_import_with_names_from_emojilib(tmp_path, tarballs):
    buffer = io.BytesIO()
    Image.new("RGBA", (64, 64), (200, 150, 0, 255)).save(buffer, format="PNG")
    catalogue = [
        {"name": "CAT FACE", "unified": "1F431", "image": "1f431.png"},
        {"name": "EVIL", "unified": "1F600", "image": "../../evil.png"},
        {"name": "NO IMAGE", "unified": "FFFF", "image": "ffff.png"},
    ]
    twitter = _tar(
        tmp_path / "twitter.tgz",
        {
            "package/emoji.json": catalogue,
            "package/img/twitter/64/1f431.png": buffer.getvalue(),
            "package/img/twitter/64/../../evil.png": buffer.getvalue(),
        },
    )
    counts = import_emoji(tmp_path / "png", ["twitter"], {**tarballs, "twitter": twitter})
    assert counts == {"twitter": 1}
    (row,) = _rows(tmp_path / "png")
    assert row["name"] == "cat face" and row["licence"].startswith("CC-BY-4.0")
    assert not (tmp_path / "evil.png").exists()


@pytest.fixture
def scenes_root(tmp_path, tarballs):
    root = tmp_path / "emoji"
    import_emoji(root, ["fluent", "noto"], tarballs, size=32)
    return root


def test_scenes_are_deterministic_and_their_masks_are_the_drawn_pixels(scenes_root):
    scenes = EmojiScenes(scenes_root, size=24, categories=None, two_object_prob=0.5, seed=2)
    again = EmojiScenes(scenes_root, size=24, categories=None, two_object_prob=0.5, seed=2)
    counts = set()
    for index in range(40):
        sample = scenes.sample(index)
        assert sample.caption == again.sample(index).caption
        assert np.array_equal(sample.image, again.sample(index).image)
        n = len(sample.concepts)
        counts.add(n)
        assert sample.masks.shape == (n, 24, 24) and sample.masks.any(axis=(1, 2)).all()
        assert not (sample.masks.sum(0) > 1).any()  # emoji never overlap
        union = sample.masks.any(0)
        drawn = (sample.image < 250).any(-1)
        assert drawn[union].all()  # every mask pixel shows its emoji
        assert not (drawn & ~_dilate(union)).any()  # outside the masks: anti-aliased rims only
        # Every word of an emoji's name points at that emoji; filler points at none.
        for k, concept in enumerate(sample.concepts):
            labelled = [w for w, o in zip(sample.words, sample.word_objects, strict=True) if o == k]
            assert set(concept.name.split()) <= set(labelled)
        for word, label in zip(sample.words, sample.word_objects, strict=True):
            if word in ("a", "an", "and", "with", "emoji", "style", "fluent", "noto", ","):
                assert label is None, (sample.caption, word)
    assert counts == {1, 2, 3}
    item = scenes[3]
    assert item["image"].shape == (3, 24, 24) and isinstance(item["caption"], str)


def _dilate(mask):
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.any([padded[i : i + h, j : j + w] for i in range(3) for j in range(3)], axis=0)


def test_scene_categories_and_errors(scenes_root, tmp_path):
    only_animals = EmojiScenes(scenes_root, categories=["Animals & Nature"])
    assert [c.name for c in only_animals.concepts] == ["cat face"]
    assert only_animals.concept("cat face").files.keys() == {"fluent", "noto"}
    with pytest.raises(BcosdiffError, match="no emoji of the categories"):
        EmojiScenes(scenes_root, categories=["Flags"])
    folder = tmp_path / "folder"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    (folder / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "x"}\n')
    with pytest.raises(BcosdiffError, match="not an emoji import"):
        EmojiScenes(folder)
    data = build_dataset({"kind": "emoji", "root": str(scenes_root), "categories": None}, 0)
    assert isinstance(data, EmojiScenes) and data[0]["image"].shape == (3, 32, 32)


def test_phrases_take_the_right_article():
    assert emoji_phrase("apple") == "an apple" and emoji_phrase("rocket") == "a rocket"
    assert emoji_phrase("rocket", article=False) == "rocket"
