"""The models bundled inside the package work offline with no arguments."""

from bcosdiff.cli import main
from bcosdiff.pipeline import DEFAULT_MODEL, bundled_models, load_pipeline, resolve_model


def test_the_default_model_is_bundled_and_generates_deterministically(tmp_path):
    assert DEFAULT_MODEL in bundled_models()
    pipe = load_pipeline()
    assert pipe.unet.config.kind == "bcos" and pipe.process.target == "x0"
    for name in ("a.png", "b.png"):
        assert (
            main(["generate", "a red circle", "--steps", "5", "--out", str(tmp_path / name)]) == 0
        )
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    directory = resolve_model(None)
    assert directory.name == DEFAULT_MODEL
    card = (directory / "MODEL_CARD.md").read_text()
    assert "steps" in card and "wall time" in card


def test_the_vanilla_baseline_is_bundled_and_not_explainable(tmp_path, capsys):
    assert "vanilla" in bundled_models()
    pipe = load_pipeline("vanilla")
    assert pipe.unet.config.kind == "vanilla" and pipe.process.target == "unit_eps"
    out = tmp_path / "v.png"
    assert (
        main(["generate", "a red circle", "-m", "vanilla", "--steps", "5", "--out", str(out)]) == 0
    )
    assert out.stat().st_size > 0
    capsys.readouterr()
    assert main(["explain", "a red circle", "-m", "vanilla", "--out", str(tmp_path / "e")]) == 2
    assert "vanilla" in capsys.readouterr().err
    card = (resolve_model("vanilla") / "MODEL_CARD.md").read_text()
    assert "3500 steps" in card and "wall time" in card
