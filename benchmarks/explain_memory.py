"""Peak memory of explaining a run vs the number of sampling steps (one run).

    python benchmarks/explain_memory.py [--model NAME_OR_DIR] [--steps 5 25 100]

Each measurement runs in a fresh process and reports its peak resident set size
(``ru_maxrss``), so earlier measurements cannot inflate later ones. Measured: ``generate``,
``explain`` by batched linear replay (the default; it keeps no graph across steps), and
``explain`` by autodiff (``method="jvp"``) with and without per-step recomputation of the
VJP (``checkpoint_steps``). Prints the memory added on top of the loaded model (MiB) and
its growth from the smallest to the largest number of steps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys
import torch
from bcosdiff.explain import explain_run
from bcosdiff.pipeline import load_pipeline

model, prompt, steps, mode = sys.argv[1] or None, sys.argv[2], int(sys.argv[3]), sys.argv[4]
pipe = load_pipeline(model)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if mode == "generate":
    pipe.generate(prompt, steps=steps, seed=0)
else:
    cond = pipe.encode([prompt])
    method, ckpt = {"replay": ("replay", True), "jvp": ("jvp", True),
                    "jvp-no-checkpoint": ("jvp", False)}[mode]
    explain_run(pipe.unet, pipe.process, steps=steps, context=cond.embeddings,
                x_T=pipe.initial_noise(0), context_mask=cond.mask, method=method,
                checkpoint_steps=ckpt)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"loaded_kib": before, "peak_kib": after}))
"""

MODES = ("generate", "replay", "jvp", "jvp-no-checkpoint")


def measure(model: str, prompt: str, steps: int, mode: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, model or "", prompt, str(steps), mode],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="")
    parser.add_argument("--prompt", default="a photo of a big red circle on a white background")
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 25, 100])
    args = parser.parse_args()
    print(f"peak memory above the loaded model (MiB) by steps; prompt {args.prompt!r}")
    print(f"{'mode':<20}" + "".join(f"{s:>10}" for s in args.steps) + f"{'growth':>10}")
    for mode in MODES:
        extra = []
        for steps in args.steps:
            kib = measure(args.model, args.prompt, steps, mode)
            extra.append(max(kib["peak_kib"] - kib["loaded_kib"], 1) / 1024)
        row = "".join(f"{e:>10.1f}" for e in extra)
        print(f"{mode:<20}{row}{extra[-1] / extra[0]:>9.2f}x", flush=True)


if __name__ == "__main__":
    main()
