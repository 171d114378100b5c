"""Run under ``torchrun --nproc_per_node 2``: a tiny training run that records, per process,
the captions it trained on and its final weights (used by test_training.py)."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from bcosdiff.training import StepInfo, TrainConfig, train

torch.set_num_threads(1)
out = Path(sys.argv[1])
config = TrainConfig.from_dict(json.loads(sys.argv[2]))
seen: list[str] = []
final: dict = {}


def record(info: StepInfo) -> None:
    seen.extend(info.captions)
    final["rank"] = info.process_index
    final["world"] = info.num_processes
    final["state"] = {k: v.detach().clone() for k, v in info.model.state_dict().items()}


train(config, progress=False, callbacks=[record])
rank = final["rank"]
save_file(final["state"], str(out / f"rank{rank}.safetensors"))
(out / f"rank{rank}.json").write_text(json.dumps({"world": final["world"], "captions": seen}))
