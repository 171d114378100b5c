"""Model directories of whole variants, the pipeline and the command line."""

import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from conftest import TINY_UNET
from PIL import Image

from bcosdiff.cli import main
from bcosdiff.errors import BcosdiffError
from bcosdiff.explain import BcosOptions
from bcosdiff.pipeline import Pipeline, create_model_directory, load_pipeline
from bcosdiff.request import batch_requests
from bcosdiff.service import explain_prompt
from bcosdiff.variants import VARIANTS


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model") / "tiny-bcos-x0"
    create_model_directory(directory, "bcos-x0", unet=TINY_UNET, text={"max_length": 16})
    return directory


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_builds_and_samples(variant, tmp_path):
    pipe = create_model_directory(
        tmp_path / variant, variant, unet=TINY_UNET, text={"max_length": 8}
    )
    loaded = Pipeline.from_directory(tmp_path / variant)
    assert loaded.process == pipe.process and loaded.unet.config == pipe.unet.config
    sample = loaded.run("a red circle", steps=2, seed=1).sample.cpu()
    assert sample.shape == (1, pipe.process.channels, 8, 8) and torch.isfinite(sample).all()


def test_generate_is_bit_identical_for_a_seed(model_dir, tmp_path):
    for name in ("a.png", "b.png"):
        assert (
            main(
                [
                    "generate",
                    "a red circle",
                    "--model",
                    str(model_dir),
                    "--steps",
                    "3",
                    "--seed",
                    "7",
                    "--out",
                    str(tmp_path / name),
                ]
            )
            == 0
        )
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (
        main(
            [
                "generate",
                "a red circle",
                "--model",
                str(model_dir),
                "--steps",
                "3",
                "--seed",
                "8",
                "--out",
                str(tmp_path / "c.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "c.png").read_bytes() != (tmp_path / "a.png").read_bytes()
    image = load_pipeline(model_dir).generate("a red circle", steps=3, seed=7)
    assert image.size == (8, 8) and image.mode == "RGB"
    # --guidance: the image of Pipeline.generate(guidance=...) and not the unguided one.
    argv = ["generate", "a red circle", "--model", str(model_dir), "--steps", "3", "--seed", "7"]
    assert main([*argv, "--guidance", "2.5", "--out", str(tmp_path / "g.png")]) == 0
    guided = load_pipeline(model_dir).generate("a red circle", steps=3, seed=7, guidance=2.5)
    saved = Image.open(tmp_path / "g.png").convert("RGB")
    assert saved.tobytes() == guided.tobytes() != image.tobytes()


BAD_CALLS = [
    (["bogus-command"], "No such command"),
    (["generate"], "Missing argument"),
    (["generate", "a", "--steps", "x"], "--steps"),
    (["generate", "   ", "--model", "MODEL"], "prompt is empty"),
    (["generate", "a", "--model", "MODEL", "--steps", "0"], "steps"),
    (["generate", "a", "--model", "MODEL", "--seed", "-1"], "seed"),
    (["generate", "a", "--model", "/no/such/model"], "unknown model"),
    (["generate", "a", "--model", "MODEL", "--out", "/proc/forbidden/x.png"], "cannot write"),
    (["generate", "a", "--model", "MODEL", "--seed", str(2**64)], "seed"),
    (["generate", "a", "--model", "MODEL", "--regenerate", "-1"], "regenerate"),
    (["explain", "", "--model", "MODEL"], "prompt is empty"),
    (["explain", "\x1b", "--model", "MODEL"], "no tokens to explain"),
    (["explain", "a", "--model", "MODEL", "--steps", "-3"], "steps"),
    (["explain", "a", "--model", "MODEL", "--steps", "5000"], "steps"),
    (["explain", "a", "--model", "MODEL", "--seed", str(2**63)], "seed"),
    (["explain", "a", "--model", "no-such-bundled-name"], "unknown model"),
    (["explain", "a", "--model", "MODEL", "--steps", "1", "--out", "/proc/nope"], "cannot write"),
    (["generate", "a", "--model", "MODEL", "--guidance", "-2"], "guidance"),
    (["explain", "a", "--model", "MODEL", "--guidance", "nan"], "guidance"),
    (["eval", "faithfulness", "--model", "MODEL", "--guidance", "-1"], "guidance"),
    (["generate", "a", "--model", "MODEL", "--device", "tpu9"], "device"),
    (["generate", "a red \udcff circle", "--model", "MODEL"], "not valid UTF-8"),
    (["generate", "a", "--model", "MODEL", "--out", "image.txt"], "image format"),
    (["generate", "a", "--model", "MODEL", "--progression", "strip.gif"], "image format"),
    (["explain", "a", "--model", "MODEL", "--device", "cuda:99"], "CUDA"),
    (["eval", "flags", "--model", "MODEL", "--quantile", "1.5"], "quantile"),
    (["info", "/no/such/model"], "unknown model"),
    (["info", "MODEL", "--words"], "lists no vocabulary"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD_CALLS)
def test_bad_input_exits_2_with_one_line(argv, expected, model_dir, capsys):
    argv = [str(model_dir) if a == "MODEL" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bcosdiff: error:") and expected in err
    assert "Traceback" not in err


def test_corrupt_weights_are_reported_cleanly(model_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((model_dir / "config.json").read_text())
    (broken / "unet.safetensors").write_bytes(b"\x80\x04 not a safetensors file")
    assert main(["generate", "a", "--model", str(broken)]) == 2
    assert "safetensors" in capsys.readouterr().err


@pytest.mark.parametrize(
    "explain",
    [{"flag_ratio": -1}, {"flag_signal": "vibes"}, {"vocabulary": "cat"}],
    ids=["ratio", "signal", "vocabulary"],
)
def test_a_bad_explain_section_is_reported_cleanly(explain, model_dir, tmp_path, capsys):
    import shutil

    from bcosdiff.modeldir import update_config

    broken = tmp_path / "bad-explain"
    shutil.copytree(model_dir, broken)
    update_config(broken, explain=explain)
    assert main(["explain", "a red circle", "--model", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"explain.{next(iter(explain))}" in err


@pytest.mark.parametrize("command", ["generate", "explain"])
def test_weights_that_are_not_safetensors_are_refused(command, model_dir, tmp_path, capsys):
    broken = tmp_path / "pickled"
    broken.mkdir()
    (broken / "config.json").write_text((model_dir / "config.json").read_text())
    net = load_pipeline(model_dir).unet
    torch.save(net.state_dict(), broken / "unet.pt")  # a pickle: must never be loaded
    out = str(tmp_path / ("o.png" if command == "generate" else "o"))
    assert main([command, "a", "--model", str(broken), "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unet.safetensors" in err and "safetensors only" in err
    (broken / "unet.safetensors").write_bytes((broken / "unet.pt").read_bytes())
    assert main([command, "a", "--model", str(broken), "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable safetensors file" in err


@pytest.mark.parametrize("command", ["generate", "explain"])
def test_a_prompt_too_long_is_truncated_with_one_warning_line(command, model_dir, tmp_path, capsys):
    prompt = " ".join(["red circle"] * 40)  # far beyond max_length 16
    out = tmp_path / ("x.png" if command == "generate" else "x")
    assert (
        main([command, prompt, "--model", str(model_dir), "--steps", "1", "--out", str(out)]) == 0
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bcosdiff: warning:") and "truncated" in err
    assert (
        main(
            [command, "a red circle", "--model", str(model_dir), "--steps", "1", "--out", str(out)]
        )
        == 0
    )
    assert capsys.readouterr().err == ""


def test_regenerate_reports_the_seeds_it_tried(model_dir, tmp_path, capsys):
    import json

    from bcosdiff.modeldir import update_config

    picky = tmp_path / "picky"
    picky.mkdir()
    for name in ("config.json", "unet.safetensors"):
        (picky / name).write_bytes((model_dir / name).read_bytes())
    update_config(picky, explain={"flag_ratio": 1e9})  # every content word with peers flagged
    argv = ["explain", "a red circle", "--model", str(picky), "--steps", "1", "--seed", "5"]
    assert main([*argv, "--regenerate", "2", "--out", str(tmp_path / "e"), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert [a["seed"] for a in data["attempts"]] == [5, 6, 7]
    assert data["seed"] in (5, 6, 7) and data["flagged_tokens"]
    assert "no seed in 5..7 shows every content word" in captured.err
    assert captured.err.count("\n") == 1
    out = tmp_path / "g.png"
    assert (
        main(
            [
                "generate",
                "a red circle",
                "--model",
                str(picky),
                "--steps",
                "1",
                "--regenerate",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.is_file() and "no seed in 0..1" in capsys.readouterr().err
    # The default threshold flags nothing in a one-attempt run, and with a stray limit of 1
    # nothing is misbound: the first seed is kept.
    calm = tmp_path / "calm"
    calm.mkdir()
    for name in ("config.json", "unet.safetensors"):
        (calm / name).write_bytes((model_dir / name).read_bytes())
    update_config(calm, explain={"stray_limit": 1.0})
    assert (
        main(
            [
                *argv,
                "--model",
                str(calm),
                "--regenerate",
                "3",
                "--out",
                str(tmp_path / "f"),
                "--json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    if not data["flagged_tokens"] and not data["misbound_words"]:
        assert [a["seed"] for a in data["attempts"]] == [5]


def test_generate_request_keeps_the_image_of_the_seed_it_reports(model_dir):
    """The service's generate: one plain run, or with regenerate the image of the kept
    attempt, which is the plain run of that attempt's seed."""
    import numpy as np

    from bcosdiff.pipeline import load_pipeline
    from bcosdiff.request import RunRequest
    from bcosdiff.service import generate_request

    pipe = load_pipeline(model_dir)
    request = RunRequest(prompt="a red circle", steps=1, seed=3)
    plain = generate_request(pipe, request)
    assert plain.explanation is None and plain.run.seed == 3
    assert np.array_equal(np.asarray(plain.image), pipe.run(request).image_array())
    # Every content word with peers flagged: all attempts are tried.
    pipe.explain_settings = replace(pipe.explain_settings, flag_ratio=1e9)
    kept = generate_request(pipe, request, regenerate=2)
    assert kept.run is None and [a[0] for a in kept.explanation.attempts] == [3, 4, 5]
    again = pipe.run(request.with_seed(kept.explanation.seed)).image_array()
    assert np.array_equal(np.asarray(kept.image), again)


def test_console_script_help_and_error_via_subprocess():
    ok = subprocess.run(
        [sys.executable, "-m", "bcosdiff", "--help"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "generate" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "bcosdiff", "--nope"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_explain_writes_every_artefact_and_prints_json(model_dir, tmp_path, capsys):
    import json

    out = tmp_path / "exp"
    argv = ["explain", "a red circle", "--model", str(model_dir), "--steps", "2", "--out", str(out)]
    assert main([*argv, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    stored = json.loads((out / "explanation.json").read_text())
    assert printed == stored
    assert stored["tokens"] == ["a", "red", "circle"]
    assert abs(sum(stored["relevance"]) - 1) < 1e-6
    for name in stored["files"].values():
        assert (out / name).is_file(), name
    assert main(["explain", " ", "--model", str(model_dir)]) == 2
    assert "prompt is empty" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_generate_and_explain_on_cuda(model_dir):
    """Every tensor of a run lives on the model's device: the GPU run gives the CPU's image
    (to rounding) and a complete explanation."""
    cpu = load_pipeline(model_dir)
    gpu = load_pipeline(model_dir, "cuda")
    assert gpu.device.type == "cuda"
    a = cpu.run("a red circle", steps=3, seed=1).sample.cpu()
    b = gpu.run("a red circle", steps=3, seed=1).sample.cpu()
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
    exp = explain_prompt(
        gpu, "a red circle", steps=3, seed=1, options=BcosOptions(sources=True), guidance=2.0
    )
    total = sum(exp.sources.values())
    assert float((total - exp.sample).norm() / exp.sample.norm()) < 1e-4
    for method in ("xattn", "dfcam", "gradxinput"):
        explain_prompt(gpu, "a red circle", steps=3, seed=1, method=method)


@pytest.mark.parametrize(("suffix", "kind"), [(".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP")])
def test_the_image_format_follows_the_suffix(model_dir, tmp_path, suffix, kind):
    out = tmp_path / f"image{suffix}"
    argv = ["generate", "a red circle", "--model", str(model_dir), "--steps", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    assert Image.open(out).format == kind


def test_an_undecodable_prompt_from_the_shell_is_one_error_line(model_dir):
    """Invalid UTF-8 bytes in argv, through the real console script."""
    script = [sys.executable, "-m", "bcosdiff", "generate", b"a red \xff circle"]
    done = subprocess.run(
        [*script, "--model", str(model_dir), "--steps", "1", "--out", "/dev/null.png"],
        capture_output=True,
    )
    assert done.returncode == 2 and b"Traceback" not in done.stderr
    assert done.stderr.count(b"\n") == 1 and b"UTF-8" in done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["generate", "a", "--steps", "x"], ["eval"]])
def test_help_and_argument_errors_do_not_import_torch(argv):
    import subprocess
    import sys

    probe = (
        "import sys\nfrom bcosdiff.cli import run\nsys.argv = ['bcosdiff', *sys.argv[1:]]\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('torch imported: %s' % ('torch' in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120
    )
    assert done.stderr.endswith("torch imported: False"), done.stderr[-500:]


def test_a_run_request_is_checked_once_and_is_the_one_way_to_sample(tmp_path):
    from dataclasses import FrozenInstanceError

    from bcosdiff import RunRequest

    with pytest.raises(TypeError):
        RunRequest("a red circle")  # keyword-only
    for bad, message in [
        ({"prompt": " "}, "empty"),
        ({"prompt": "a", "steps": 0}, "steps"),
        ({"prompt": "a", "seed": -1}, "seed"),
        ({"prompt": "a", "eta": -0.1}, "eta"),
        ({"prompt": "a", "guidance": -2}, "guidance"),
    ]:
        with pytest.raises(BcosdiffError, match=message):
            RunRequest(**bad)
    request = RunRequest(prompt="a red circle", steps=3, seed=5)
    with pytest.raises(FrozenInstanceError):
        request.seed = 6
    pipe = create_model_directory(tmp_path / "m", "bcos-x0", unet=TINY_UNET)
    with pytest.raises(BcosdiffError, match="steps must be between 1 and"):
        pipe.run(RunRequest(prompt="a", steps=10**6))  # the model's bound
    with pytest.raises(TypeError, match="inside the RunRequest"):
        pipe.run(request, seed=7)
    run = pipe.run(request)
    assert run.seed == 5 and run.steps == 3
    same = pipe.generate("a red circle", steps=3, seed=5)
    assert same.tobytes() == run.image.tobytes() == pipe.generate(request).tobytes()
    batch = pipe.images(
        pipe.sample_batch(batch_requests(["a red circle", "a blue square"], [5, 6], steps=3))
    )
    assert batch[0].tobytes() == same.tobytes()
    assert batch[1].tobytes() == pipe.generate("a blue square", steps=3, seed=6).tobytes()
    mixed = [request, RunRequest(prompt="a blue square", steps=4, seed=6)]
    with pytest.raises(ValueError, match="differ in prompt and seed only"):
        pipe.sample_batch(mixed)
    with pytest.raises(ValueError, match="one seed per prompt"):
        batch_requests(["a", "b"], [1], steps=3)


@pytest.mark.parametrize("command", ["generate", "explain"])
def test_words_the_model_never_saw_get_one_note(command, model_dir, tmp_path, capsys):
    """A model that lists its training vocabulary names the prompt's unknown words on stderr
    (one line) and in explanation.json; one that lists none stays silent."""
    import json
    import shutil

    from bcosdiff.data.shapes import ShapesDataset
    from bcosdiff.modeldir import update_config_section

    listed = tmp_path / "listed"
    shutil.copytree(model_dir, listed)
    update_config_section(listed, "explain", vocabulary=sorted(ShapesDataset().vocabulary()))
    out = tmp_path / ("x.png" if command == "generate" else "x")
    for model, listed_words in ((listed, True), (model_dir, False)):
        argv = [command, "a red Kitten", "--model", str(model), "--steps", "1", "--out", str(out)]
        assert main(argv) == 0
        err = [line for line in capsys.readouterr().err.splitlines() if "training captions" in line]
        if listed_words:
            assert len(err) == 1
            assert err[0].startswith("bcosdiff: note: kitten: not in listed's training captions")
        else:
            assert err == []
        if command == "explain":
            unknown = json.loads((out / "explanation.json").read_text())["unknown_words"]
            assert unknown == (["kitten"] if listed_words else [])


def test_info_reads_bundled_names_and_lists_the_vocabulary_on_request(capsys):
    import json

    assert main(["info", "bcos-x0"]) == 0
    out = capsys.readouterr().out
    config = json.loads(out[: out.rindex("parameters:")])
    assert config["explain"]["vocabulary"] == "40 words (--words)" and "parameters: " in out
    assert main(["info", "bcos-x0", "--words"]) == 0
    words = capsys.readouterr().out.split()
    assert len(words) == 40 and "triangle" in words and words == sorted(words)
