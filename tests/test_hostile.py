"""Hostile and broken model directories are refused with one line, before large allocations."""

import json
import shutil
import struct

import pytest
from conftest import TINY_UNET

from bcosdiff.cli import main
from bcosdiff.pipeline import create_model_directory


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    directory = tmp_path_factory.mktemp("good") / "model"
    create_model_directory(directory, "bcos-x0", unet=TINY_UNET, text={"max_length": 12})
    return directory


def _copy(good, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(good, target)
    return target


def _config(directory, change):
    path = directory / "config.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _safetensors(path, header: dict, data: bytes = b"", length: int | None = None):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)


def _refused(directory, capsys, expected):
    capsys.readouterr()
    out = str(directory.parent / "refused.png")  # written only if the model were accepted
    argv = ["generate", "a red circle", "--model", str(directory), "--steps", "1", "--out", out]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bcosdiff: error:"), err
    assert expected in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("channels", "expected"), [(10**9, "bad 'unet' section"), (10**5, "do not fit its config")]
)
def test_absurd_sizes_in_the_config_are_refused_without_allocating(
    good, tmp_path, capsys, channels, expected
):
    """10^5 channels would be tens of GB of weights: the layout is built on the meta device
    and compared with the file's header, so nothing that large is ever allocated."""
    directory = _copy(good, tmp_path)
    _config(directory, lambda d: d["unet"].update(model_channels=channels))
    _refused(directory, capsys, expected)


@pytest.mark.parametrize(
    ("field", "value"),
    [("model_channels", "many"), ("channel_mult", "12"), ("sample_size", -8), ("b", None)],
)
def test_wrong_types_in_the_config_are_refused(good, tmp_path, capsys, field, value):
    directory = _copy(good, tmp_path)
    _config(directory, lambda d: d["unet"].update({field: value}))
    _refused(directory, capsys, "unet")


def test_only_pickled_weights_are_refused(good, tmp_path, capsys):
    directory = _copy(good, tmp_path)
    (directory / "unet.safetensors").rename(directory / "pytorch_model.bin")
    _refused(directory, capsys, "safetensors only")


def test_a_symlink_out_of_the_directory_is_refused(good, tmp_path, capsys):
    directory = _copy(good, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (directory / "unet.safetensors").rename(elsewhere / "unet.safetensors")
    (directory / "unet.safetensors").symlink_to(elsewhere / "unet.safetensors")
    _refused(directory, capsys, "outside its model directory")


def test_safetensors_headers_that_lie_are_refused(good, tmp_path, capsys):
    directory = _copy(good, tmp_path)
    weights = directory / "unet.safetensors"
    huge = {"conv_in.weight": {"dtype": "F32", "shape": [10**12], "data_offsets": [0, 4 * 10**12]}}
    _safetensors(weights, huge, b"\0" * 16)
    _refused(directory, capsys, "not a readable safetensors file")
    _safetensors(weights, {}, length=2**60)  # a header length far past the file's end
    _refused(directory, capsys, "not a readable safetensors file")


def test_a_text_model_without_a_tokenizer_is_refused(good, tmp_path, capsys):
    directory = _copy(good, tmp_path)
    text = tmp_path / "text-model"
    text.mkdir()
    (text / "config.json").write_text(json.dumps({"model_type": "bert"}))
    _config(directory, lambda d: d["text"].update(model=str(text)))
    _refused(directory, capsys, "text model")


def test_explain_checks_memory_first_and_says_what_to_lower(good, monkeypatch, capsys):
    from bcosdiff.explain import budget

    pipe_dir = str(good)
    unet = __import__("bcosdiff").load_pipeline(pipe_dir).unet
    estimate = budget.check_explanation_memory(unet, 12, 1, "bcos")
    # More tokens or (for gradient x input) more steps need more.
    assert budget.check_explanation_memory(unet, 24, 1, "bcos") > estimate
    few = budget.check_explanation_memory(unet, 12, 5, "gradxinput")
    assert budget.check_explanation_memory(unet, 12, 50, "gradxinput") > few
    assert estimate > 0
    monkeypatch.setattr(budget, "available_bytes", lambda device: estimate // 2)
    capsys.readouterr()
    assert main(["explain", "a red circle", "--model", pipe_dir, "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "GiB" in err and "shorter prompt" in err


@pytest.mark.parametrize(
    "command",
    [
        ["data", "shapes", "{blocked}/out", "--count", "2"],
        ["data", "emoji", "{blocked}/out"],
        ["generate", "a red circle", "-m", "{good}", "--steps", "1", "--out", "{blocked}/x.png"],
    ],
    ids=["data-shapes", "data-emoji", "generate"],
)
def test_a_destination_that_cannot_be_created_is_one_line(good, tmp_path, capsys, command):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    argv = [part.format(blocked=blocked, good=good) for part in command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("bcosdiff: error: cannot ") and "a-file" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
