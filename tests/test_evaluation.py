"""Evaluation commands: relevance tables."""

import csv
import math

import pytest
from conftest import TINY_UNET

from bcosdiff.cli import main
from bcosdiff.data.captions import load_captions
from bcosdiff.evaluation.relevance import pearson, relevance_table
from bcosdiff.explain.tokens import Word
from bcosdiff.pipeline import create_model_directory


def test_pearson_matches_numpy():
    import numpy as np

    xs, ys = [1.0, 2.0, 5.0, 7.0], [0.3, 0.1, 0.4, 0.9]
    assert pearson(xs, ys) == pytest.approx(np.corrcoef(xs, ys)[0, 1])
    assert math.isnan(pearson([1.0, 1.0], [0.2, 0.3])) and math.isnan(pearson([1.0], [1.0]))


class _ScriptedModel:
    """Relevance of each word = its length / 100, so the table is known in advance."""

    name = "scripted"

    def explain(self, caption, steps, seed, heatmaps):
        words = [Word(w, [i], len(w) / 100) for i, w in enumerate(caption.split())]
        return type("E", (), {"words": words})()


def test_relevance_table_counts_each_word_once_per_caption():
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
