"""The models bundled inside the package work offline with no arguments."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_pixels_agree
from safetensors.torch import load_file

from bcosdiff.cli import main
from bcosdiff.explain import BcosOptions
from bcosdiff.explain.registry import get_method
from bcosdiff.pipeline import DEFAULT_MODEL, bundled_models, load_pipeline, resolve_model
from bcosdiff.service import explain_prompt


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
    assert "13,500 steps" in card and "wall time" in card
    assert pipe.guidance == load_pipeline().guidance  # compared at the same default scale


# Reference outputs of the bundled models (tests/data/bundled_references.safetensors, written
# by tests/record_bundled_references.py): changes to the layers, the sampler or the
# explanation code must not change them. Compared to float rounding, not bit for bit: the
# same code on another CPU's kernels (AVX2 against the generic ones) moves the floats by
# about 1e-6 and may round a pixel one level apart. The references were recorded on
# 2026-12-07 with AVX2 kernels; with the generic ones (ATEN_CPU_CAPABILITY=default) the same
# code reproduces, bit for bit, the image digests kept before them since the sampler and the
# explanation were reorganised.
REFERENCES = Path(__file__).resolve().parent / "data" / "bundled_references.safetensors"

# (model, prompt, seed, steps), each at the model's default guidance.
BUNDLED_IMAGES = [
    ("bcos-x0", "a red circle", 0, 25),
    ("bcos-x0", "a big blue triangle and a small yellow square", 3, 25),
    ("bcos-x0", "a green square on the left", 7, 10),
    ("vanilla", "a red circle", 0, 25),
    ("vanilla", "a big blue triangle and a small yellow square", 3, 25),
    ("vanilla", "a green square on the left", 7, 10),
]

# Explanations (5 steps, seed 3, with sources) and the words they report: flagged words and
# misbound words, recorded when binding came to place words by density (the summed-mass rule
# reported "blue" of an image drawn as asked, and "cat" where the density rule reports "face").
BUNDLED_EXPLANATIONS = [
    ("bcos-x0", "a red circle and a blue square", [], []),
    ("bcos-emoji", "a cat face and a rocket", [], ["face", "rocket"]),
    ("bcos-x0", "a red circle and a shark", ["shark"], []),
]


def image_key(model: str, prompt: str, seed: int, steps: int) -> str:
    return f"image/{model}/{prompt}/seed {seed}/{steps} steps"


def explanation_key(model: str, prompt: str, name: str) -> str:
    return f"explanation/{model}/{prompt}/{name}"


def explanation_case(model: str, prompt: str, explanation=None) -> dict[str, torch.Tensor]:
    """The recorded parts of one bundled explanation (computed when not given)."""
    if explanation is None:
        explanation = explain_prompt(
            load_pipeline(model), prompt, steps=5, seed=3, options=BcosOptions(sources=True)
        )
    return {
        "relevance": torch.tensor([float(r) for r in explanation.relevance]),
        "contribution_maps": explanation.contribution_maps,
        "sample": explanation.sample,
        "image": torch.from_numpy(np.asarray(explanation.image).copy()),
    }


@pytest.fixture(scope="module")
def references() -> dict[str, torch.Tensor]:
    return load_file(str(REFERENCES))


def _assert_floats_agree(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to rounding: elementwise within 1e-4 of the largest value's magnitude."""
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize(("model", "prompt", "seed", "steps"), BUNDLED_IMAGES)
def test_bundled_images_match_the_recorded_ones(model, prompt, seed, steps, references):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the thread count the references were recorded with
    try:
        pixels = np.asarray(load_pipeline(model).generate(prompt, steps=steps, seed=seed))
    finally:
        torch.set_num_threads(threads)
    assert_pixels_agree(pixels, references[image_key(model, prompt, seed, steps)].numpy())


@pytest.mark.parametrize(("model", "prompt", "flagged", "misbound"), BUNDLED_EXPLANATIONS)
def test_bundled_explanations_match_the_recorded_ones(model, prompt, flagged, misbound, references):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipe = load_pipeline(model)
        exp = explain_prompt(pipe, prompt, steps=5, seed=3, options=BcosOptions(sources=True))
    finally:
        torch.set_num_threads(threads)
    parts = explanation_case(model, prompt, exp)
    for name in ("relevance", "contribution_maps", "sample"):
        _assert_floats_agree(parts[name], references[explanation_key(model, prompt, name)])
    assert_pixels_agree(parts["image"], references[explanation_key(model, prompt, "image")])
    assert (exp.flagged_tokens, exp.misbound_words) == (flagged, misbound)


def test_the_default_model_at_its_default_guidance_flags_an_unseen_word():
    """At the model's own guidance scale: "shark" (never in the training data) is flagged,
    the words it can draw are not, and every source's contribution adds up to the sample."""
    pipe = load_pipeline()
    exp = explain_prompt(
        pipe, "a red circle and a shark", steps=25, seed=0, options=BcosOptions(sources=True)
    )
    assert exp.guidance == pipe.guidance
    assert "shark" in exp.flagged_tokens
    assert "red" not in exp.flagged_tokens and "circle" not in exp.flagged_tokens
    total = sum(exp.sources.values())
    assert float((total - exp.sample).norm() / exp.sample.norm()) < 1e-4


def test_an_unseen_word_is_flagged_alone_beside_a_size_word():
    """ "big" leaves no colour of its own and the unseen "shark" leaves nothing: only
    "shark" is flagged, and no word is misbound (the image draws one big blue triangle)."""
    pipe = load_pipeline("bcos-x0")
    exp = explain_prompt(pipe, "a big blue triangle and a shark", steps=25, seed=0)
    assert (exp.flagged_tokens, exp.misbound_words) == (["shark"], [])


def test_the_bundled_models_list_the_words_they_were_trained_on():
    """Exported from their training data: a word of that data is known, others are not."""
    assert load_pipeline("bcos-emoji").unknown_words("a cat face and a zeppelin") == ["zeppelin"]
    assert load_pipeline("vanilla-emoji").unknown_words("a rocket next to a walrus") == ["walrus"]
    assert load_pipeline("bcos-x0").unknown_words("a red circle and a cat face") == ["cat", "face"]


def test_explaining_a_generated_run_reports_the_generated_image():
    """The replay recomputes the sample as row 0 of a batch of 1 + tokens rows; for this prompt
    the batched products round one pixel differently. The explanation of a sampled run must
    still show the image that was generated."""
    pipe = load_pipeline()
    prompt = "a small purple triangle with a small purple square in flat design"
    run = pipe.run(prompt, steps=25, seed=18, guidance=1.0)
    exp = get_method("bcos")(pipe).attribute(run)
    assert np.array_equal(np.asarray(exp.image), run.image_array())
    torch.testing.assert_close(exp.sample, run.sample[0], rtol=0, atol=0)


@pytest.mark.parametrize("name", bundled_models())
def test_every_bundled_model_loads_generates_and_has_a_card(name, tmp_path):
    directory = resolve_model(name)
    weights = sum(p.stat().st_size for p in directory.glob("*.safetensors"))
    assert 0 < weights <= 20 * 2**20  # the size limit of a bundled model
    card = (directory / "MODEL_CARD.md").read_text()
    assert "steps" in card and "wall time" in card
    out = tmp_path / "image.png"
    assert main(["generate", "a cat face", "-m", name, "--steps", "2", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    if load_pipeline(name).unet.config.kind == "bcos":
        argv = ["explain", "a cat face and a rocket", "-m", name, "--steps", "2", "--html"]
        assert main([*argv, "--out", str(tmp_path / "e")]) == 0
        assert (tmp_path / "e" / "report.html").stat().st_size > 0
