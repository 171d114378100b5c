"""Evaluation commands: relevance tables."""

import csv
import math

import pytest
from conftest import TINY_UNET, torchrun_two_processes

from bcosdiff.cli import main
from bcosdiff.data.captions import load_captions
from bcosdiff.evaluation import relevance
from bcosdiff.evaluation.relevance import pearson, relevance_table
from bcosdiff.explain.methods import SCORES_ONLY
from bcosdiff.explain.tokens import Word
from bcosdiff.pipeline import create_model_directory


def test_pearson_matches_numpy():
    import numpy as np

    xs, ys = [1.0, 2.0, 5.0, 7.0], [0.3, 0.1, 0.4, 0.9]
    assert pearson(xs, ys) == pytest.approx(np.corrcoef(xs, ys)[0, 1])
    assert math.isnan(pearson([1.0, 1.0], [0.2, 0.3])) and math.isnan(pearson([1.0], [1.0]))


class _ScriptedModel:
    name = "scripted"


def _scripted_explanation(pipe, caption, *, steps, seed, options):
    """Relevance of each word = its length / 100, so the table is known in advance."""
    assert isinstance(pipe, _ScriptedModel) and steps == 1 and options is SCORES_ONLY
    words = [Word(w, [i], len(w) / 100) for i, w in enumerate(caption.split())]
    return type("E", (), {"words": words})()


def test_relevance_table_counts_each_word_once_per_caption(monkeypatch):
    monkeypatch.setattr(relevance, "explain_prompt", _scripted_explanation)
    table = relevance_table(_ScriptedModel(), ["a red red circle", "a blue circle"], steps=1)
    rows = {r.word: r for r in table.rows}
    assert rows["a"].occurrences == 2 and rows["circle"].occurrences == 2
    assert rows["red"].occurrences == 1 and rows["red"].mean_relevance == pytest.approx(0.06)
    assert rows["circle"].mean_relevance == pytest.approx(0.06) and rows["circle"].content
    assert not rows["a"].content
    assert [r.word for r in table.rows[:2]] == ["a", "circle"]  # most frequent first
    counts = [float(r.occurrences) for r in table.rows]
    assert table.correlation == pytest.approx(
        pearson(counts, [r.mean_relevance for r in table.rows])
    )


def test_eval_relevance_command_writes_csv_and_markdown(tmp_path, capsys):
    model = tmp_path / "m"
    create_model_directory(model, "bcos-x0", unet=TINY_UNET, text={"max_length": 24})
    out = tmp_path / "rel"
    argv = ["eval", "relevance", "--model", str(model), "--captions", "3", "--steps", "1"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed == (out / "relevance.md").read_text() and "Pearson r" in printed
    with open(out / "relevance.csv") as handle:
        rows = list(csv.DictReader(handle))
    captions = load_captions("shapes", 3, 0)
    words = {w.lower() for c in captions for w in c.split() if w.isalpha()}
    assert words <= {r["word"] for r in rows}
    assert max(int(r["occurrences"]) for r in rows) <= 3
    assert main(["eval", "relevance", "--model", str(model), "--data", str(tmp_path / "none")]) == 2
    assert "metadata.jsonl" in capsys.readouterr().err


def test_captions_from_an_image_folder(tmp_path):
    import json

    from PIL import Image

    rows = []
    for i in range(5):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
        rows.append(json.dumps({"file_name": f"{i}.png", "text": f"caption {i}"}))
    (tmp_path / "metadata.jsonl").write_text("\n".join(rows))
    assert load_captions(str(tmp_path), 10) == [f"caption {i}" for i in range(5)]
    picked = load_captions(str(tmp_path), 3, seed=1)
    assert len(set(picked)) == 3 and picked == load_captions(str(tmp_path), 3, seed=1)


# --- faithfulness -------------------------------------------------------------------------


class _FakePipe:
    """Stands in for a model: sample_size, and deletion images that are all background."""

    name = "fake"
    sample_size = 32

    def sample_batch(self, requests):
        return [len(r.prompt) for r in requests]

    def run(self, prompt, steps, seed, guidance=None):
        """The dataset image stands in for the generated one."""
        from types import SimpleNamespace

        from bcosdiff.data.shapes import HELD_OUT_TEMPLATES, ShapesDataset

        dataset = ShapesDataset(size=32, seed=0, two_object_prob=0.5, templates=HELD_OUT_TEMPLATES)
        image = dataset.sample(seed).image
        return SimpleNamespace(
            prompt=prompt, seed=seed, steps=steps, guidance=1.0, image_array=lambda: image
        )

    def images(self, samples):
        from PIL import Image

        from bcosdiff.data.shapes import BACKGROUND

        return [Image.new("RGB", (32, 32), tuple(BACKGROUND)) for _ in samples]


def _oracle(inside: bool):
    """A method that 'generates' the dataset image and points exactly at (or away from)
    the described object; object words get relevance 0.2, other words 0.01."""
    import numpy as np

    from bcosdiff.data.shapes import HELD_OUT_TEMPLATES, ShapesDataset
    from bcosdiff.evaluation.faithfulness import Attribution

    dataset = ShapesDataset(size=32, seed=0, two_object_prob=0.5, templates=HELD_OUT_TEMPLATES)

    class Method:
        def __init__(self, pipe):
            pass

        def attribute(self, run):
            return method(run.prompt, run.seed)

    def method(prompt, seed):
        sample = dataset.sample(seed)
        assert sample.caption == prompt
        maps, relevance = [], []
        for k in sample.word_objects:
            mask = sample.masks[k] if k is not None else np.zeros((32, 32), bool)
            maps.append((mask if inside else ~mask).astype(float) * (k is not None))
            relevance.append(0.2 if k is not None else 0.01)
        return Attribution(sample.image, list(sample.words), relevance, np.stack(maps))

    return Method


def test_faithfulness_scores_an_oracle_and_an_anti_oracle():
    from bcosdiff.evaluation.faithfulness import evaluate_faithfulness
    from bcosdiff.explain import register_method
    from bcosdiff.explain.registry import METHODS

    register_method("oracle", _oracle(inside=True))
    register_method("anti", _oracle(inside=False))
    try:
        results = evaluate_faithfulness(_FakePipe(), ["oracle", "anti"], prompts=8, steps=1)
    finally:
        METHODS.pop("oracle")
        METHODS.pop("anti")
    good, bad = (r.metrics for r in results)
    assert results[0].counts["localised_words_single"] > 0
    assert results[0].counts["localised_words_two"] > 0
    for n in ("single", "two"):
        assert good[f"localisation_mass_{n}"] > 0.9 and good[f"pointing_{n}"] == 1.0
        assert bad[f"localisation_mass_{n}"] < 0.1 and bad[f"pointing_{n}"] == 0.0
    assert good["localisation_mass_key_words"] > 0.9 and good["pointing_key_words"] == 1.0
    # Token specificity: the oracle's maps lie on their own object, the anti-oracle's on the
    # other one (its map covers everything but its own object).
    counts = results[0].counts
    assert counts["specificity_images"] > 0 and counts["specificity_words"] > 0
    assert counts["specificity_images_exact"] == counts["specificity_images"]  # real images
    assert good["token_specificity"] == 1.0 and good["token_specificity_above_half"] == 1.0
    assert bad["token_specificity"] < 0.2 and bad["token_specificity_above_half"] == 0.0
    assert good["object_filler_ratio"] == pytest.approx(20.0)
    # Dataset images show every asked object: nothing to detect, so no AUROC.
    assert results[0].counts["objects_missed"] == 0 and good["failure_auroc_objects"] is None
    # Every deletion image is blank: within a prompt every word changes the image equally,
    # so no per-prompt ρ exists.
    assert results[0].counts["deletion_words"] > 0 and results[0].counts["deletion_prompts"] == 0
    assert good["deletion_spearman_mean"] is None
    with pytest.raises(ValueError, match="unknown method"):
        evaluate_faithfulness(_FakePipe(), ["nope"], prompts=1)


def test_localisation_and_word_removal():
    import numpy as np

    from bcosdiff.evaluation.faithfulness import localisation, without_word

    mask = np.zeros((4, 4), bool)
    mask[1, 1] = True
    heat = np.zeros((4, 4))
    heat[1, 1], heat[3, 3], heat[0, 0] = 3.0, 1.0, -5.0
    assert localisation(heat, mask) == (0.75, True)
    heat[1, 2] = 9.0  # next to the mask: within the one-pixel tolerance
    assert localisation(heat, mask)[1] is True
    heat[3, 0] = 20.0
    assert localisation(heat, mask)[1] is False
    assert localisation(-np.ones((4, 4)), mask)[0] is None
    assert without_word("a red circle and a red square", "red", 1) == "a red circle and a square"
    assert without_word("Redwood red", "red", 0) == "Redwood"


def test_eval_faithfulness_command(tmp_path, capsys):
    import json

    model = tmp_path / "m"
    create_model_directory(model, "bcos-x0", unet=TINY_UNET, text={"max_length": 24})
    out = tmp_path / "f"
    argv = ["eval", "faithfulness", "--model", str(model), "--prompts", "2", "--steps", "1"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed == (out / "faithfulness.md").read_text() and "pointing game" in printed
    data = json.loads((out / "faithfulness.json").read_text())
    assert data["results"][0]["method"] == "bcos" and data["results"][0]["prompts"] == 2
    assert data["shown_only"] is False and data["results"][0]["counts"]["images_explained"] == 2
    # --shown-only explains only what the checker finds drawn as asked (an untrained model
    # draws no object, so nothing), and says so under the table.
    assert main([*argv, "--shown-only", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "faithfulness.json").read_text())
    assert data["shown_only"] is True and data["results"][0]["counts"]["images_explained"] == 0
    assert "the 0 of 2 images that show every asked object" in printed
    assert main([*argv, "--method", "nope", "--out", str(out)]) == 2
    assert "unknown method" in capsys.readouterr().err


# --- Fréchet distance -----------------------------------------------------------------------


class _CopyPipe:
    """'Generates' exactly the real shapes image of each index, or its colour negative."""

    name = "copy"
    sample_size = 32

    def __init__(self, negative=False):
        from bcosdiff.data import ShapesDataset

        self.dataset = ShapesDataset(size=32, seed=0)
        self.negative = negative

    def sample_batch(self, requests):
        return [r.seed for r in requests]

    def images(self, seeds):
        from PIL import Image

        images = [self.dataset.sample(s).image for s in seeds]
        return [Image.fromarray(255 - im if self.negative else im) for im in images]


def test_shapes_frechet_distance_is_zero_for_the_real_images_and_large_otherwise():
    from bcosdiff.evaluation.fid import frechet_distance

    same = frechet_distance(_CopyPipe(), count=40, steps=1, batch=16, reference=True)
    other = frechet_distance(_CopyPipe(negative=True), count=40, steps=1, batch=16)
    assert same.metric == "shapes Fréchet distance" and same.count == 40
    assert abs(same.value) < 1e-3 and other.value > 100 * max(abs(same.value), 1e-3)
    # Two disjoint real sets differ by sampling noise only: far below the negatives.
    assert 1e-3 < same.real_vs_real < other.value / 4


def test_shards_of_several_processes_cover_every_index_once():
    from bcosdiff.evaluation.fid import frechet_distance

    seen = []

    class Recording(_CopyPipe):
        def sample_batch(self, requests):
            seen.extend(r.seed for r in requests)
            return [r.seed for r in requests]

    for rank in range(3):
        frechet_distance(Recording(), count=10, steps=1, batch=2, rank=rank, world=3)
    assert sorted(seen) == list(range(10))


def test_fid_with_local_inception_weights(tmp_path, capsys):
    import json

    import torch
    from safetensors.torch import save_file

    from bcosdiff.evaluation.inception import FIDInceptionV3

    torch.manual_seed(0)
    net = FIDInceptionV3()  # randomly initialised, saved as a local weights file
    weights = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    model = tmp_path / "m"
    create_model_directory(model, "bcos-x0", unet=TINY_UNET, text={"max_length": 16})
    argv = ["eval", "fid", "--model", str(model), "--count", "4", "--batch", "2", "--steps", "1"]
    result = tmp_path / "fid.json"
    assert (
        main([*argv, "--inception-weights", str(weights), "--out", str(result), "--no-progress"])
        == 0
    )
    line = capsys.readouterr().out
    assert line.startswith("FID: ") and "InceptionV3" in line
    data = json.loads(result.read_text())
    assert data["metric"] == "FID" and data["count"] == 4 and math.isfinite(data["value"])
    # Without Inception weights the shapes metric is used, and never called FID.
    assert main([*argv, "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("shapes Fréchet distance: ")
    # Wrong or non-safetensors weights, and non-shapes data without Inception: exit 2.
    save_file({"x": torch.zeros(1)}, str(tmp_path / "wrong.safetensors"))
    assert main([*argv, "--inception-weights", str(tmp_path / "wrong.safetensors")]) == 2
    assert "InceptionV3" in capsys.readouterr().err
    (tmp_path / "pickle.pt").write_bytes(b"\x80\x04 pickle")
    assert main([*argv, "--inception-weights", str(tmp_path / "pickle.pt")]) == 2
    assert "safetensors" in capsys.readouterr().err
    assert main([*argv, "--data", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_fid_sharded_over_two_processes_equals_one_process(tmp_path):
    import json

    model = tmp_path / "m"
    create_model_directory(model, "bcos-x0", unet=TINY_UNET, text={"max_length": 16})
    args = ["eval", "fid", "--model", str(model), "--count", "6", "--batch", "2", "--steps", "1"]
    args += ["--no-progress", "--no-reference"]
    assert main([*args, "--out", str(tmp_path / "one.json")]) == 0
    torchrun_two_processes(["-m", "bcosdiff", *args, "--out", str(tmp_path / "two.json")], 29533)
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["count"] == one["count"] == 6
    assert two["value"] == pytest.approx(one["value"], rel=1e-4)
