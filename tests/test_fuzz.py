"""Fuzzing: whatever the input, every entry point either works or ends with one clean
``bcosdiff: error:`` line and exit status 2 (never a traceback or another exception)."""

import contextlib
import json
import os
import string

import pytest
import yaml
from conftest import TINY_UNET
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bcosdiff.cli import main
from bcosdiff.errors import BcosdiffError
from bcosdiff.pipeline import create_model_directory
from bcosdiff.serve import Limits, parse_request
from bcosdiff.training.config import TrainConfig, load_train_config

# The same examples on every run, so that CI cannot turn red by chance; set
# BCOSDIFF_FUZZ_EXAMPLES=N to draw N fresh random examples per test instead.
_EXPLORE = int(os.environ.get("BCOSDIFF_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_EXPLORE or 25,
    derandomize=not _EXPLORE,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Any unicode, control characters, lone surrogates (undecodable argv bytes), long text.
PROMPTS = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8", categories=("Cc", "Zs")), max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1),
    st.text(alphabet=string.ascii_letters + " ", min_size=500, max_size=3000),
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=8),
)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fuzz") / "tiny"
    create_model_directory(directory, "bcos-x0", unet=TINY_UNET, text={"max_length": 12})
    return str(directory)


def _clean(code: int, capsys) -> None:
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("bcosdiff: error:")]
        assert len(errors) == 1, err


@FUZZ
@given(prompt=PROMPTS)
def test_generate_prompts(model, tmp_path, capsys, prompt):
    out = str(tmp_path / "x.png")
    _clean(main(["generate", prompt, "-m", model, "--steps", "1", "--out", out]), capsys)


@FUZZ
@given(prompt=PROMPTS, steps=NUMBERS, seed=NUMBERS, guidance=NUMBERS)
@example(prompt="\x1b", steps="1", seed="0", guidance="0")  # tokenizes to nothing
def test_explain_prompts_and_numbers(model, tmp_path, capsys, prompt, steps, seed, guidance):
    if steps.strip().isdecimal() and int(steps) > 2:
        steps = "2"  # a valid step count: keep the run short
    argv = ["explain", prompt, "-m", model, "--steps", steps, "--seed", seed]
    _clean(main([*argv, "--guidance", guidance, "--out", str(tmp_path / "e")]), capsys)


CONFIG_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = st.sampled_from(
    [
        "steps",
        "batch_size",
        "lr",
        "unet",
        "data",
        "adam_betas",
        "variant",
        "prompt_dropout",
        "guidance",
        "ema_decay",
        "seed",
        "mixed_precision",
        "bogus",
    ]
)


@FUZZ
@given(config=st.dictionaries(KEYS, CONFIG_VALUES, max_size=5))
def test_train_config_parsing(tmp_path, config):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        loaded = load_train_config(path)
    except BcosdiffError:
        return
    assert isinstance(loaded, TrainConfig)


@FUZZ
@given(text=st.text(max_size=200))
def test_train_config_files_of_any_text(tmp_path, text):
    for suffix in (".yaml", ".toml", ".json"):
        path = tmp_path / f"config{suffix}"
        path.write_text(text)
        with contextlib.suppress(BcosdiffError):
            load_train_config(path)


@FUZZ
@given(prompts=NUMBERS, steps=NUMBERS, share=NUMBERS)
def test_eval_numbers(model, tmp_path, capsys, prompts, steps, share):
    # Only values that would start a long evaluation are replaced by small ones.
    if prompts.strip().isdecimal() and int(prompts) > 0:
        prompts = "1"
    if steps.strip().isdecimal() and int(steps) > 0:
        steps = "1"
    argv = ["eval", "faithfulness", "-m", model, "--prompts", prompts, "--steps", steps]
    argv += ["--two-object-share", share, "--no-insertion", "--no-deletion", "--no-progress"]
    _clean(main([*argv, "--out", str(tmp_path / "f")]), capsys)


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=100),
        st.dictionaries(
            st.sampled_from(["prompt", "compare", "steps", "seed", "guidance", "regenerate"]),
            CONFIG_VALUES,
        ).map(lambda d: json.dumps(d).encode()),
    )
)
def test_serve_requests(body):
    try:
        request = parse_request(body, Limits())
    except BcosdiffError:
        return
    assert request.runs and all(
        r.prompt and 1 <= r.steps <= Limits().max_steps for r in request.runs
    )
