"""Training: exact resume, atomic checkpoints, config errors."""

import pytest
import torch

from bcosdiff.errors import BcosdiffError
from bcosdiff.pipeline import Pipeline
from bcosdiff.training import TrainConfig, latest_checkpoint, load_checkpoint, train
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
    assert pipe.sample("a red circle", steps=2, seed=0).shape == (1, 6, 8, 8)


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
