"""Training: exact resume, atomic checkpoints, config errors."""

import json

import pytest
import torch
from conftest import torchrun_two_processes

from bcosdiff.errors import BcosdiffError
from bcosdiff.pipeline import Pipeline
from bcosdiff.training import (
    TrainConfig,
    export_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    train,
)
from bcosdiff.training.checkpoint import save_checkpoint
from bcosdiff.training.config import load_train_config

TINY = dict(
    unet={
        "model_channels": 16,
        "channel_mult": [1, 2],
        "attention_levels": [1],
        "head_channels": 8,
        "norm_groups": 4,
    },
    text={"max_length": 16},
    data={"kind": "shapes", "size": 8},
    batch_size=3,
    log_every=2,
    keep_last=2,
    warmup_steps=2,
)


def _run(tmp, steps, checkpoint_every=2):
    config = TrainConfig.from_dict(
        {**TINY, "output_dir": str(tmp), "steps": steps, "checkpoint_every": checkpoint_every}
    )
    return train(config, progress=False)


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    _run(tmp_path / "straight", 6)
    _run(tmp_path / "split", 4)
    assert latest_checkpoint(tmp_path / "split" / "checkpoints").name == "step-00000004"
    _run(tmp_path / "split", 6)
    a, state_a = load_checkpoint(latest_checkpoint(tmp_path / "straight" / "checkpoints"))
    b, state_b = load_checkpoint(latest_checkpoint(tmp_path / "split" / "checkpoints"))
    assert state_a["step"] == state_b["step"] == 6
    for part in ("model", "ema", "optimizer"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], rtol=0, atol=0, msg=key)
    # keep-last-N pruned the older checkpoints
    names = sorted(p.name for p in (tmp_path / "split" / "checkpoints").iterdir())
    assert names == ["step-00000004", "step-00000006"]
    pipe = Pipeline.from_directory(tmp_path / "split" / "model")
    assert pipe.run("a red circle", steps=2, seed=0).sample.shape == (1, 6, 8, 8)
    for weights in ("model", "ema"):
        exported = Pipeline.from_directory(
            export_checkpoint(tmp_path / "split", tmp_path / weights, weights=weights)
        )
        for key, value in exported.unet.state_dict().items():
            assert torch.equal(value, b[weights][key]), key


def test_model_card_records_the_command_steps_and_loss(tmp_path):
    from bcosdiff.modeldir import read_config

    config = TrainConfig.from_dict(
        {**TINY, "output_dir": str(tmp_path / "run"), "steps": 4, "checkpoint_every": 2}
    )
    train(config, progress=False, command="bcosdiff train tiny.yaml")
    card = (
        export_checkpoint(tmp_path / "run", tmp_path / "m", weights="model") / "MODEL_CARD.md"
    ).read_text()
    assert "- command: `bcosdiff train tiny.yaml`" in card
    assert "after 4 steps" in card and "final training loss" in card and "wall time" in card
    # The default guidance comes from the training config unless the export sets it.
    assert read_config(tmp_path / "m")["sampling"]["guidance"] == config.guidance
    chosen = export_checkpoint(tmp_path / "run", tmp_path / "g", weights="ema", guidance=2.5)
    assert read_config(chosen)["sampling"]["guidance"] == 2.5
    assert read_config(chosen)["training"]["config"]["guidance"] == config.guidance
    assert "default scale 2.5" in (chosen / "MODEL_CARD.md").read_text()
    with pytest.raises(BcosdiffError, match="guidance"):
        export_checkpoint(tmp_path / "run", tmp_path / "h", weights="ema", guidance=-1)
    assert not (tmp_path / "h").exists()
    # A hand-written card survives a re-export only when asked to; the weights are new.
    written = chosen / "MODEL_CARD.md"
    written.write_text("# my card\n\nLicences: ...\n")
    export_checkpoint(tmp_path / "run", chosen, weights="model", keep_card=True)
    assert written.read_text() == "# my card\n\nLicences: ...\n"
    assert read_config(chosen)["training"]["weights"] == "model"
    export_checkpoint(tmp_path / "run", chosen, weights="model")
    assert "final training loss" in written.read_text()
    with pytest.raises(BcosdiffError, match="no MODEL_CARD.md"):
        export_checkpoint(tmp_path / "run", tmp_path / "new", keep_card=True)
    assert not (tmp_path / "new").exists()


def test_config_files_are_validated(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 0\n")
    with pytest.raises(BcosdiffError, match="steps"):
        load_train_config(path)
    path.write_text("stepz: 3\n")
    with pytest.raises(BcosdiffError, match="unknown"):
        load_train_config(path)
    (tmp_path / "c.toml").write_text("steps = [")
    with pytest.raises(BcosdiffError, match="parse"):
        load_train_config(tmp_path / "c.toml")
    (tmp_path / "c.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(BcosdiffError, match="must be"):
        load_train_config(tmp_path / "c.pkl")
    path.write_text("keep_every: -1\n")
    with pytest.raises(BcosdiffError, match="keep_every"):
        load_train_config(path)


@pytest.mark.parametrize(
    ("keep_every", "kept"), [(0, [9, 10]), (4, [4, 8, 9, 10]), (3, [3, 6, 9, 10])]
)
def test_checkpoints_keep_the_last_ones_and_the_milestones(tmp_path, keep_every, kept):
    parts = {"model": {"w": torch.zeros(2)}}
    for step in range(1, 11):
        save_checkpoint(tmp_path, step, parts, {"step": step}, keep_last=2, keep_every=keep_every)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"step-{k:08d}" for k in kept]
    assert latest_checkpoint(tmp_path).name == "step-00000010"


def _write_config(path, **overrides):
    import json

    path.write_text(json.dumps({**TINY, **overrides}))
    return path


def test_sigkill_mid_run_then_resume_continues_exactly(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "killed"
    config = _write_config(
        tmp_path / "c.json", output_dir=str(run), steps=10_000, checkpoint_every=1, keep_last=3
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcosdiff", "train", str(config), "--no-progress"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    checkpoints = run / "checkpoints"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if (
                latest_checkpoint(checkpoints)
                and latest_checkpoint(checkpoints).name >= "step-00000005"
            ):
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        else:
            pytest.fail("no checkpoint within 120 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # Every checkpoint that is visible is complete and readable (never a truncated file).
    complete = sorted(p for p in checkpoints.glob("step-*"))
    assert complete
    for path in complete:
        parts, state = load_checkpoint(path)
        assert set(parts) == {"model", "ema", "optimizer"}
        assert state["step"] == int(path.name.split("-")[1])
    last = int(complete[-1].name.split("-")[1])

    # Resume to last + 3 steps, and compare with an uninterrupted run of the same length
    # (both in fresh processes with the killed run's thread count, for identical arithmetic).
    def cli_run(config_path):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bcosdiff",
                "train",
                str(config_path),
                "--no-progress",
                "--steps",
                str(last + 3),
            ],
            env=env,
            check=True,
            capture_output=True,
        )

    cli_run(config)
    assert not list(checkpoints.glob(".step-*"))  # partial directories were cleaned up
    straight = _write_config(
        tmp_path / "s.json", output_dir=str(tmp_path / "straight"), checkpoint_every=100
    )
    cli_run(straight)
    a, _ = load_checkpoint(latest_checkpoint(checkpoints))
    b, _ = load_checkpoint(latest_checkpoint(tmp_path / "straight" / "checkpoints"))
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)


def test_two_cpu_processes_stay_in_sync_and_shard_the_data(tmp_path):
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    settings = json.dumps(
        {**TINY, "output_dir": str(tmp_path / "run"), "steps": 4, "checkpoint_every": 4}
    )
    script = Path(__file__).with_name("dist_train.py")
    torchrun_two_processes([str(script), str(tmp_path), settings], 29531)
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in records)
    first, second = (r["captions"] for r in records)
    assert len(first) == len(second) == 4 * TINY["batch_size"]
    from bcosdiff.data import ShapesDataset

    dataset = ShapesDataset(size=8, seed=0)
    expected = [dataset.sample(i).caption for i in range(2 * 4 * TINY["batch_size"])]
    # Together the processes used each of the first 24 samples exactly once (a multiset
    # comparison: duplicated data would repeat one half and miss the other).
    assert sorted(first + second) == sorted(expected)
    assert first != second
    w0 = load_file(str(tmp_path / "rank0.safetensors"))
    w1 = load_file(str(tmp_path / "rank1.safetensors"))
    initial = load_file(
        str(tmp_path / "run" / "checkpoints" / "step-00000004" / "model.safetensors")
    )
    for key in w0:
        torch.testing.assert_close(w0[key], w1[key], rtol=0, atol=0)
        torch.testing.assert_close(w0[key], initial[key], rtol=0, atol=0)


def test_shipped_configs_are_valid():
    """Every shipped config follows the schema: a known variant, a valid U-Net, data options
    its reader takes, the paper's settings at GPU scale; and every variant has a CPU recipe."""
    import inspect
    from pathlib import Path

    from bcosdiff.data import ShapesDataset
    from bcosdiff.data.emoji_scenes import EmojiScenes
    from bcosdiff.data.images import ImageFolderDataset
    from bcosdiff.data.laion import WebDatasetShards
    from bcosdiff.networks import UNetConfig
    from bcosdiff.variants import VARIANTS, get_variant

    readers = {
        "shapes": ShapesDataset,
        "emoji": EmojiScenes,
        "folder": ImageFolderDataset,
        "laion": WebDatasetShards,
    }
    configs = Path(__file__).parents[1] / "configs"
    paths = sorted(configs.glob("**/*.yaml"))
    assert any(p.parent.name == "proxy" for p in paths)  # the recipe study's arms too
    cpu_variants = set()
    for path in paths:
        config = load_train_config(path)  # unknown keys or bad values are refused here
        variant = get_variant(config.variant)
        tier = path.relative_to(configs).parts[0]
        if tier == "cpu":
            cpu_variants.add(config.variant)
        # as the trainer builds it: the variant's kind unless the config names another
        UNetConfig.from_dict(
            {"kind": variant.unet_kind, "sample_size": config.data["size"], **config.unet}
        )
        options = dict(config.data)
        reader = readers[options.pop("kind")]  # a data kind the trainer knows
        inspect.signature(reader).bind(**{"seed": 0, **options})  # options the reader takes
        if tier == "gpu":
            assert config.lr == 2e-6 and config.batch_size == 3 and config.steps == 1_000_000
            assert config.data["size"] == 64
        for model in (config.init_from, config.distill_from):
            if model:  # a model directory of the repository, relative to its root
                assert (Path(__file__).parents[1] / model / "config.json").is_file()
        if "-compose" in path.stem:  # guidance needs an unconditional branch
            assert config.prompt_dropout > 0 and config.guidance > 1
            assert config.data["two_object_prob"] > 0.5
    assert cpu_variants == set(VARIANTS)


def test_init_from_a_model_directory(tmp_path):
    from bcosdiff.modeldir import load_unet, read_config

    first = _run(tmp_path / "first", 2)
    config = TrainConfig.from_dict(
        {
            **TINY,
            "output_dir": str(tmp_path / "second"),
            "steps": 1,
            "lr": 1e-12,
            "init_from": str(first),
        }
    )
    second = train(config, progress=False)
    # The lineage counts the steps behind the starting model, in the model and on its card.
    assert read_config(second)["training"]["init"] == {"from": str(first), "total_steps": 2}
    card = (export_checkpoint(tmp_path / "second", tmp_path / "m") / "MODEL_CARD.md").read_text()
    assert "(2 steps): 3 training steps in all" in card
    a, b = load_unet(first).state_dict(), load_unet(second).state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    bad = TrainConfig.from_dict(
        {
            **TINY,
            "output_dir": str(tmp_path / "third"),
            "steps": 1,
            "unet": {**TINY["unet"], "model_channels": 8},
            "init_from": str(first),
        }
    )
    with pytest.raises(BcosdiffError, match="another U-Net config"):
        train(bad, progress=False)


def test_a_crash_during_export_never_leaves_a_mixed_model(tmp_path, monkeypatch):
    """A failure (a kill) at any point of an export leaves the previous model intact and
    no loadable half-written directory."""
    from bcosdiff.modeldir import read_weights
    from bcosdiff.pipeline import Pipeline
    from bcosdiff.training import export as export_module

    _run(tmp_path / "run", 2)
    out = tmp_path / "model"
    export_checkpoint(tmp_path / "run", out, weights="model")
    before = read_weights(out / "unet.safetensors")

    real_write = export_module._write_model

    def dies_after_the_weights(directory, **parts):
        real_write(directory, **parts)
        (directory / "config.json").unlink()  # as if killed between the two files
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "_write_model", dies_after_the_weights)
    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(tmp_path / "run", out, weights="ema")
    after = read_weights(out / "unet.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)  # the old model, untouched
    Pipeline.from_directory(out)  # still loads
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model")] == []
    monkeypatch.undo()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    with pytest.raises(BcosdiffError, match="not a model directory"):
        export_checkpoint(tmp_path / "run", tmp_path / "notes", weights="ema")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep"


def test_a_run_resumes_only_under_its_own_config(tmp_path):
    _run(tmp_path / "run", 4)
    before = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())

    def resume(**changes):
        settings = {**TINY, "output_dir": str(tmp_path / "run"), "steps": 4, **changes}
        return train(TrainConfig.from_dict(settings), progress=False)

    with pytest.raises(BcosdiffError, match=r"another training config \(lr, seed differ\)"):
        resume(seed=3, lr=1e-3)
    with pytest.raises(BcosdiffError, match="at step 4, past this run's 3 steps"):
        resume(steps=3)
    # A refused resume leaves the run as it was.
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == before
    # Where and how often it writes, how long it runs and the export's guidance may change.
    resume(steps=5, log_every=1, checkpoint_every=1, keep_last=4, guidance=2.0)
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-00000005"
    # A cool-down may be added while no step already taken falls inside it (with the
    # warm-up of 2 steps, a cool-down of 4 in 6 steps would lower the rate of step 3).
    with pytest.raises(BcosdiffError, match="gives its step 3 another learning rate"):
        resume(steps=6, lr_cooldown_steps=4)
    resume(steps=8, lr_cooldown_steps=3)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
    rates = {int(row.split(",")[0]): float(row.split(",")[2]) for row in rows}
    # Row s holds the rate of step s − 1 (0-based): steps 5, 6, 7 are the cool-down's.
    assert rates[4] == rates[6] == TrainConfig.lr
    assert rates[8] == pytest.approx(TrainConfig.lr * (1 - (2 / 3) ** 0.5), rel=1e-3)


def test_resume_keeps_the_learning_rate_of_every_step_taken(tmp_path):
    """Which schedule changes a resumed run may make: the rate of each step taken is fixed."""
    from bcosdiff.networks import UNetConfig
    from bcosdiff.training.loop import _check_resumable

    config = TrainConfig.from_dict({**TINY, "steps": 100, "lr_schedule": "cosine"})

    def check(step, **changes):
        saved = {k: v for k, v in config.to_dict().items() if k != "unet"}
        state = {"step": step, "config": json.loads(json.dumps(saved))}
        changed = TrainConfig.from_dict({**TINY, "steps": 100, **changes})
        _check_resumable(tmp_path / "ckpt", state, changed, UNetConfig())

    check(50, lr_schedule="cosine")  # the same run
    with pytest.raises(BcosdiffError, match="another learning rate"):
        check(50, lr_schedule="cosine", steps=200)  # a longer cosine reshapes the past
    config = TrainConfig.from_dict({**TINY, "steps": 100})  # constant: the length is free
    check(50, steps=200)
    check(50, steps=200, lr_cooldown_steps=151)  # its first step, 49, keeps the full rate
    with pytest.raises(BcosdiffError, match="gives its step 49 another learning rate"):
        check(50, steps=200, lr_cooldown_steps=152)
