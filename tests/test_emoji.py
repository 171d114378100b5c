"""Emoji data: the npm import (SVG and PNG artwork, keywords, masks) and the scenes."""

import io
import json
import tarfile
from dataclasses import asdict

import numpy as np
import pytest
from conftest import TINY_UNET
from PIL import Image

from bcosdiff.data.emoji import concept_key, import_emoji, npm_pack
from bcosdiff.data.emoji_scenes import EmojiScenes, emoji_phrase
from bcosdiff.errors import BcosdiffError
from bcosdiff.training import build_dataset

# Left half red, on a transparent 16x16 canvas: mirroring moves it to the right half.
LEFT_RED = '<rect x="0" y="0" width="8" height="16" fill="#ff0000"/>'
DISC = '<circle cx="8" cy="8" r="6" fill="#{}"/>'
BAR = '<rect x="2" y="6" width="12" height="4" fill="#{}"/>'


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
    return make_tarballs(tmp_path)


def make_tarballs(tmp_path):
    """Two tiny Iconify sets (the second mirrors the rocket and lacks the apple), emojilib."""
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
            "thumbs-up": BAR.format("0033ff"),
            "thumbs-up-dark": BAR.format("553300"),
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
            "thumbs-up": BAR.format("0044ee"),
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
    counts = import_emoji(out, sets=["fluent", "noto"], tarballs=tarballs, size=16)
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
    counts = import_emoji(
        tmp_path / "all", sets=["fluent", "noto"], tarballs=tarballs, size=16, common_only=False
    )
    assert counts == {"fluent": 4, "noto": 3}
    with pytest.raises(BcosdiffError, match="unknown emoji"):
        import_emoji(tmp_path / "x", sets=["wingdings"], tarballs=tarballs)
    with pytest.raises(BcosdiffError, match="tarball not found"):
        missing = {**tarballs, "fluent": tmp_path / "missing.tgz"}
        import_emoji(tmp_path / "x", sets=["fluent"], tarballs=missing)
    broken = _tar(tmp_path / "broken.tgz", {"package/icons.json": b"{not json"})
    with pytest.raises(BcosdiffError, match="not valid JSON"):
        import_emoji(tmp_path / "x", sets=["fluent"], tarballs={**tarballs, "fluent": broken})


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
    counts = import_emoji(
        tmp_path / "png", sets=["twitter"], tarballs={**tarballs, "twitter": twitter}
    )
    assert counts == {"twitter": 1}
    (row,) = _rows(tmp_path / "png")
    assert row["name"] == "cat face" and row["licence"].startswith("CC-BY-4.0")
    assert not (tmp_path / "evil.png").exists()


@pytest.fixture
def scenes_root(tmp_path, tarballs):
    root = tmp_path / "emoji"
    import_emoji(root, sets=["fluent", "noto"], tarballs=tarballs, size=32)
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
        for i, (la, ta, sa) in enumerate(sample.boxes):  # and keep a gap of size / 16
            for lb, tb, sb in sample.boxes[i + 1 :]:
                assert (
                    la + sa + 2 <= lb or lb + sb + 2 <= la or ta + sa + 2 <= tb or tb + sb + 2 <= ta
                )
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


# --- the recognisability instrument (bcosdiff.evaluation.emoji) -------------------------


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    from bcosdiff.evaluation.emoji import EmojiGallery, train_emoji_features

    root = tmp_path_factory.mktemp("emoji")
    import_emoji(root / "emoji", sets=["fluent", "noto"], tarballs=make_tarballs(root), size=32)
    scenes = EmojiScenes(root / "emoji", size=24, categories=None, seed=1)
    net = train_emoji_features(scenes, steps=40, batch=16)
    return EmojiGallery(net, scenes)


def test_retrieval_ranks_concepts_by_their_best_style(gallery):
    import torch

    found = gallery.retrieve(gallery.real_images)
    for entry, result in enumerate(found):
        assert result.ranking[0] == int(gallery.concept_of[entry])  # itself: cosine 1
        assert sorted(result.ranking) == list(range(len(gallery.concepts)))
        assert result.style == gallery.style_of[entry]
    # With its own style left out, an image is matched only against the other style.
    left_out = gallery.retrieve(gallery.real_images, leave_out=list(gallery.style_of))
    assert all(r.style != s for r, s in zip(left_out, gallery.style_of, strict=True))
    # The concept score is the maximum over its styles: recompute it by hand for one image.
    features = torch.nn.functional.normalize(gallery.embed(gallery.real_images[:1]), dim=1)
    similarity = (features @ gallery.features.T)[0]
    best = [
        max(float(similarity[e]) for e in range(len(similarity)) if gallery.concept_of[e] == c)
        for c in range(len(gallery.concepts))
    ]
    assert found[0].ranking == sorted(range(len(best)), key=lambda c: -best[c])


def test_regions_cut_outs_and_scene_recognition(gallery):
    from bcosdiff.evaluation.emoji import cut_out, emoji_regions, recognised_in_scene

    pairs = gallery.scenes.variant(two_object_prob=1.0, three_object_prob=0.0, seed=4)
    for index in range(6):
        sample = pairs.sample(index)
        boxes = emoji_regions(sample.image)
        assert len(boxes) == 2
        for mask in sample.masks:  # each emoji lies inside one found region
            ys, xs = np.nonzero(mask)
            assert any(
                top <= ys.min() and ys.max() < bottom and left <= xs.min() and xs.max() < right
                for top, left, bottom, right in boxes
            )
        crop = cut_out(sample.image, boxes[0])
        ys, xs = np.nonzero((crop < 250).any(-1))
        assert crop.shape == sample.image.shape
        assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 <= round(24 * 0.86)
        asked = [gallery.concepts.index(c) for c in sample.concepts]
        assert recognised_in_scene(gallery, sample.image, asked, k=len(gallery.concepts)) == [
            True,
            True,
        ]
    blank = np.full((24, 24, 3), 255, np.uint8)
    assert emoji_regions(blank) == [] and recognised_in_scene(gallery, blank, [0]) == [False]


def test_the_scene_report_counts_recognised_emoji_and_two_object_layouts(gallery):
    from bcosdiff.evaluation.emoji import ConceptPrompt, lone_emoji, scene_report

    pairs = gallery.scenes.variant(two_object_prob=1.0, three_object_prob=0.0, seed=4)
    samples = [pairs.sample(index) for index in range(3)]
    prompts = [
        ConceptPrompt("", [gallery.concepts.index(c) for c in s.concepts], "") for s in samples
    ]
    real = np.stack([s.image for s in samples])
    report, hits = scene_report(gallery, prompts, real)
    assert report.prompts == 3 and report.two_regions == 1.0
    assert hits == [[True, True]] * 3 and report.both == 1.0
    # One emoji alone (the first asked) per image: one object found, so no two-object layout.
    alone = np.stack([lone_emoji(gallery.scenes, s.concepts[0], "fluent") for s in samples])
    report, _ = scene_report(gallery, prompts, alone)
    assert report.two_regions == 0.0 and report.first == 1.0
    blank = np.full_like(real, 255)
    report, _ = scene_report(gallery, prompts, blank)
    assert asdict(report) == {
        "prompts": 3,
        "both": 0.0,
        "first": 0.0,
        "second": 0.0,
        "two_regions": 0.0,
    }


def test_reports_count_what_they_claim(gallery):
    from bcosdiff.evaluation.emoji import (
        STYLE_NOT_ASKED,
        concept_prompts,
        emoji_frechet_distance,
        lone_emoji,
        scene_prompts,
        single_report,
    )

    prompts = concept_prompts(gallery, 3)
    assert len({p.concepts[0] for p in prompts}) == 3
    assert [p.style for p in prompts] == [STYLE_NOT_ASKED, "fluent", "noto"]
    assert prompts[1].prompt.endswith(", fluent style")
    pairs = scene_prompts(gallery, 5)
    assert all(len(set(p.concepts)) == 2 and " and " in p.prompt for p in pairs)
    # Images of the asked concepts in the asked style: all top-1 and in style.
    right = np.stack(
        [
            lone_emoji(
                gallery.scenes,
                gallery.concepts[p.concepts[0]],
                "fluent" if p.style == STYLE_NOT_ASKED else p.style,
            )
            for p in prompts
        ]
    )
    rows, ranks = single_report(gallery, prompts, right)
    overall = rows[-1]
    assert overall.style == "overall" and overall.prompts == 3
    assert overall.top1 == 1.0 and ranks == [0, 0, 0] and overall.style_match == 1.0
    # The same images for the prompts rotated by one: no prompt's concept is shown.
    rotated = [prompts[1], prompts[2], prompts[0]]
    rows, ranks = single_report(gallery, rotated, right)
    assert rows[-1].top1 == 0.0 and all(r > 0 for r in ranks)
    assert emoji_frechet_distance(gallery, right, right) < 1e-3
    assert emoji_frechet_distance(gallery, right[::-1].copy(), np.full_like(right, 255)) > 1e-3


def test_emoji_truth_scores_an_oracle_and_an_anti_oracle(gallery):
    from types import SimpleNamespace

    from bcosdiff.evaluation.faithfulness import Attribution, EmojiTruth, evaluate_faithfulness
    from bcosdiff.explain import register_method
    from bcosdiff.explain.registry import METHODS

    truth = EmojiTruth(gallery, seed=3, two_object_share=0.5, top=1)

    class Pipe:  # "generates" the real scene of each prompt
        name, sample_size = "real scenes", 24

        def run(self, prompt, steps, seed, guidance=None):
            image = truth.prompt(seed).sample.image
            return SimpleNamespace(prompt=prompt, seed=seed, image_array=lambda: image)

    def oracle(inside):
        class Method:
            def __init__(self, pipe):
                pass

            def attribute(self, run):
                sample = truth.prompt(run.seed).sample
                maps = [
                    (sample.masks[k] if inside else ~sample.masks[k]).astype(float)
                    if k is not None
                    else np.zeros((24, 24))
                    for k in sample.word_objects
                ]
                relevance = [0.2 if k is not None else 0.01 for k in sample.word_objects]
                return Attribution(sample.image, list(sample.words), relevance, np.stack(maps))

        return Method

    register_method("oracle", oracle(True))
    register_method("anti", oracle(False))
    try:
        good, bad = evaluate_faithfulness(
            Pipe(), ["oracle", "anti"], truth=truth, prompts=8, deletion=False, insertion=False
        )
    finally:
        METHODS.pop("oracle")
        METHODS.pop("anti")
    assert good.benchmark == "emoji" and good.key_words == "emoji name words"
    assert good.counts["objects"] > 0 and good.counts["objects_missed"] == 0  # real scenes
    assert good.counts["localised_words_two"] > 0 and good.counts["specificity_images"] > 0
    for n in ("single", "two"):
        assert good.metrics[f"localisation_mass_{n}"] > 0.9 and good.metrics[f"pointing_{n}"] == 1
        assert bad.metrics[f"localisation_mass_{n}"] < 0.1
    assert good.metrics["token_specificity"] > 0.95 and bad.metrics["token_specificity"] < 0.2
    assert good.metrics["localisation_mass_key_words"] > 0.9


def test_shown_only_explains_just_the_images_that_show_every_asked_object(gallery):
    """With shown_only the methods see only the images whose asked emoji are all found and
    shown; a blank canvas (odd seeds) shows none and is skipped, every real scene is kept."""
    from types import SimpleNamespace

    from bcosdiff.evaluation.faithfulness import (
        Attribution,
        EmojiTruth,
        evaluate_faithfulness,
        faithfulness_markdown,
    )
    from bcosdiff.explain import register_method
    from bcosdiff.explain.registry import METHODS

    truth = EmojiTruth(gallery, seed=3, two_object_share=1.0, top=1)
    blank = np.full((24, 24, 3), 255, np.uint8)
    explained = []

    class Pipe:  # the real scene for even seeds, nothing drawn for odd ones
        name, sample_size = "half drawn", 24

        def run(self, prompt, steps, seed, guidance=None):
            image = blank if seed % 2 else truth.prompt(seed).sample.image
            return SimpleNamespace(prompt=prompt, seed=seed, image_array=lambda: image)

    class Oracle:
        def __init__(self, pipe):
            pass

        def attribute(self, run):
            explained.append(run.seed)
            sample = truth.prompt(run.seed).sample
            maps = [
                sample.masks[k].astype(float) if k is not None else np.zeros((24, 24))
                for k in sample.word_objects
            ]
            image = run.image_array()
            relevance = [0.2 if k is not None else 0.01 for k in sample.word_objects]
            return Attribution(image, list(sample.words), relevance, np.stack(maps))

    register_method("oracle", Oracle)
    try:
        kept, every = (
            evaluate_faithfulness(
                Pipe(), ["oracle"], truth=truth, prompts=8, deletion=False, insertion=False,
                shown_only=shown_only,
            )[0]
            for shown_only in (True, False)
        )  # fmt: skip
    finally:
        METHODS.pop("oracle")
    assert explained[: kept.counts["images_explained"]] == [0, 2, 4, 6]
    assert kept.counts["images_explained"] == 4 and every.counts["images_explained"] == 8
    assert kept.counts["objects"] == 8 and kept.counts["objects_missed"] == 0
    assert every.counts["objects"] == 16 and every.counts["objects_missed"] == 8
    assert kept.counts["specificity_images_exact"] == 4
    assert kept.metrics["token_specificity"] > 0.95
    assert "the 4 of 8 images that show every asked object" in faithfulness_markdown([kept])
    assert "--shown-only" not in faithfulness_markdown([every])


def test_captions_of_an_emoji_import_are_its_scene_captions(scenes_root):
    from bcosdiff.data.captions import load_captions

    captions = load_captions(str(scenes_root), 6, seed=2)
    scenes = EmojiScenes(scenes_root, seed=2)
    assert captions == [scenes.sample(i).caption for i in range(6)]
    held_out = load_captions(str(scenes_root), 12, seed=2, held_out=True)
    assert all("drawing of" in c or "sticker" in c for c in held_out)


def test_binding_prompts_of_emoji_scenes_ask_for_two_distinct_emoji(gallery, tmp_path, capsys):
    """eval binding --data reads emoji scenes: its prompts ask for two distinct concepts,
    each name word bound to its emoji; a path that is no import is one clear error."""
    from bcosdiff.cli import main
    from bcosdiff.evaluation.binding import binding_prompts, binding_truth
    from bcosdiff.evaluation.faithfulness import EmojiTruth

    truth = EmojiTruth(gallery, seed=1, two_object_share=1.0)
    chosen = binding_prompts(truth, 6)
    assert len(chosen) == 6 and chosen == sorted(set(chosen))
    for k in chosen:
        prompt = truth.prompt(k)
        assert truth.two_distinct(prompt) and prompt.objects == 2
        named = {o for o in prompt.word_objects if o is not None}
        assert named == {0, 1}
    shapes = binding_truth("shapes", 32, 0)
    assert all(shapes.two_distinct(shapes.prompt(k)) for k in binding_prompts(shapes, 5))
    argv = ["eval", "binding", "--data", str(tmp_path / "nowhere"), "--prompts", "1"]
    assert main([*argv, "--calibration-prompts", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0]


def test_every_phrasing_names_the_same_two_emoji_and_labels_their_names(gallery):
    """The phrasing study on emoji scenes: each phrasing asks for the same two emoji by name,
    with the article agreeing; the name's words (not the adjectives) are the key words."""
    from bcosdiff.data.shapes import caption_words
    from bcosdiff.evaluation.faithfulness import EmojiTruth
    from bcosdiff.evaluation.phrasing import PHRASINGS, PhrasedEmojiTruth, get_phrasing

    scenes = EmojiTruth(gallery, seed=1, two_object_share=1.0)
    truths = {p.name: PhrasedEmojiTruth(scenes, p) for p in PHRASINGS}
    for index in range(6):
        prompts = {name: t.prompt(index) for name, t in truths.items()}
        asked = {tuple(c.key for c in p.sample.concepts) for p in prompts.values()}
        assert len(asked) == 1 and len(next(iter(asked))) == 2
        names = [c.name for c in prompts["known"].sample.concepts]
        for name, prompt in prompts.items():
            assert caption_words(prompt.caption) == prompt.words, name
            for k, emoji in enumerate(names):
                keys = [prompt.words[j] for j in prompt.key_words if prompt.word_objects[j] == k]
                assert keys == caption_words(emoji), (name, keys)
                article = "an" if emoji[0] in "aeiou" else "a"
                assert f"{article} {emoji}" in prompts["known"].caption
            assert truths[name].two_distinct(prompt) == scenes.two_distinct(scenes.prompt(index))
    assert truths["numeral"].prompt(0).caption.startswith("two emoji: one ")
    # The article agrees with the word after it, adjectives included; shapes keep "a".
    known, adjectives = get_phrasing("known"), get_phrasing("adjectives")
    names = [("apple",), ("ice cream",)]
    assert known.caption(names, agree=True)[0] == "an apple and an ice cream"
    assert (
        adjectives.caption(names, agree=True)[0] == "a big bright apple and a small plain ice cream"
    )
    assert known.caption([("orange", "circle")] * 2)[0] == "a orange circle and a orange circle"
    adjectives = truths["adjectives"].prompt(0)
    described = [
        w for w, k in zip(adjectives.words, adjectives.word_objects, strict=True) if k == 0
    ]
    assert described[:2] == ["big", "bright"] and adjectives.caption.startswith("a big bright ")


def test_eval_phrasing_runs_on_emoji_scenes(gallery, tmp_path, monkeypatch, capsys):
    """--data takes the study to two-emoji scenes (the scripted explainer sees emoji
    prompts in each phrasing); the report says so, and a path that is no import is one
    clear error."""
    from bcosdiff.cli import main
    from bcosdiff.evaluation import binding, phrasing
    from bcosdiff.evaluation.binding import ObjectRecord, PromptRecord
    from bcosdiff.evaluation.faithfulness import EmojiTruth
    from bcosdiff.pipeline import create_model_directory

    model = tmp_path / "m"
    create_model_directory(model, "bcos-x0", unet=TINY_UNET)
    seen = []

    def scripted(pipe, truth, prompt, seed, **_):
        seen.append((truth.phrasing.name, truth.prompt(prompt).caption))
        missed = seed % 2 == 0
        objects = (ObjectRecord(missed=missed, stray=0.8 if missed else 0.2, weakest=1.0),) * 2
        return PromptRecord(prompt, seed, objects)

    monkeypatch.setattr(binding, "explain_and_check", scripted)
    monkeypatch.setattr(  # the tiny import's own recogniser, not the bundled one
        EmojiTruth,
        "from_import",
        classmethod(lambda cls, root, seed, two_object_share: cls(gallery, seed, 1.0)),
    )
    out = tmp_path / "study"
    argv = ["eval", "phrasing", "-m", str(model), "--prompts", "2", "--steps", "1"]
    argv += ["--calibrate", "known", "--measure", "numeral", "--regenerate", "0"]
    assert main([*argv, "--data", "emoji-import", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "2 two-emoji scenes of data seed 1" in printed and "| numeral |" in printed
    assert [name for name, _ in seen] == ["known", "known", "numeral", "numeral"]
    assert all(caption.startswith("two emoji: one ") for name, caption in seen[2:])
    saved = json.loads((out / "phrasing.json").read_text())
    assert saved["data"] == "emoji-import" and saved["rates"]["numeral"]["either"]["tpr"] == 1.0
    assert phrasing.phrased_truths("shapes", 32, 1, ["known"])["known"].scenes.name == "shapes"
    monkeypatch.undo()
    argv = ["eval", "phrasing", "-m", str(model), "--prompts", "1", "--steps", "1"]
    assert main([*argv, "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0]


def test_an_emoji_model_exports_the_names_its_phrases_must_keep(scenes_root, monkeypatch):
    """Export lists the data's multi-word names that the phrase rules would cut; shapes
    data has none, and a missing import warns instead of failing the export."""
    from types import SimpleNamespace

    from bcosdiff.training import export, loop

    data = {"kind": "emoji", "root": str(scenes_root), "size": 24}
    assert export.trained_compounds(data) == []  # cat face, rocket, thumbs up: all one phrase
    assert export.trained_compounds({"kind": "shapes"}) == []
    with pytest.warns(UserWarning, match="no multi-word names"):
        assert export.trained_compounds({**data, "root": str(scenes_root / "gone")}) == []
    named = [SimpleNamespace(name=n) for n in ("cat face", "glass of milk", "fork and knife")]
    fake = SimpleNamespace(concepts=named, vocabulary=frozenset, depicting_vocabulary=frozenset)
    monkeypatch.setattr(loop, "build_dataset", lambda data, seed: fake)
    assert export.trained_compounds(data) == ["fork and knife", "glass of milk"]


def test_an_exported_model_lists_the_words_of_its_training_captions(scenes_root):
    """The vocabulary holds every word of every caption the scenes make (names, keywords,
    templates, styles), not a word outside them; open-ended caption data lists none."""
    from bcosdiff.training import export

    data = {"kind": "emoji", "root": str(scenes_root), "size": 24}
    vocabulary = export.trained_vocabulary(data)
    assert vocabulary == sorted(set(vocabulary))
    scenes = EmojiScenes(scenes_root, size=24, categories=None, keyword_prob=0.5, seed=4)
    seen = {w.lower() for i in range(200) for w in scenes.sample(i).words if w.isalpha()}
    assert seen <= set(scenes.vocabulary()) and "zeppelin" not in scenes.vocabulary()
    concepts = EmojiScenes(scenes_root, size=24).concepts
    for concept in concepts:
        assert set(" ".join([concept.name, *concept.keywords]).lower().split()) <= set(vocabulary)
    assert "triangle" in export.trained_vocabulary({"kind": "shapes"})
    # The depicting words: names, keywords and styles, not the templates' frame words.
    _, _, depicting = export._trained_words(data)
    assert set(depicting) < set(vocabulary) and "emoji" not in scenes.depicting_vocabulary()
    assert {w for c in concepts for w in c.name.lower().split()} <= set(depicting)
    assert set(scenes.styles) <= set(depicting) and not {"of", "icon", "with"} & set(depicting)
    shapes = export._trained_words({"kind": "shapes"})[2]
    assert {"red", "triangle", "big", "left"} <= set(shapes)
    assert not {"photo", "stock", "image", "and", "a", "on"} & set(shapes)
    assert export.trained_vocabulary({"kind": "folder", "root": "anywhere"}) is None
    with pytest.warns(UserWarning, match="no multi-word names or vocabulary"):
        assert export.trained_vocabulary({**data, "root": str(scenes_root / "gone")}) is None
