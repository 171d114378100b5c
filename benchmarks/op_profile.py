"""Where the time goes: torch.profiler over one generation and one explanation (one run).

    python benchmarks/op_profile.py [--model bcos-x0] [--steps 25] [--top 12]

Prints the operators with the largest self CPU time for a 25-step generation and for a
B-cos explanation (relevance, reconstruction and every token's map) of the same prompt,
each after one warm-up run.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from bcosdiff.pipeline import load_pipeline
from bcosdiff.service import explain_prompt


def top_operators(work, top: int) -> str:
    work()  # warm-up
    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        work()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bcos-x0")
    parser.add_argument("--prompt", default="a big red circle and a small blue square")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    pipe = load_pipeline(args.model)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, model {pipe.name}")
    print(f"\n## generation ({args.steps} steps)\n")
    print(top_operators(lambda: pipe.run(args.prompt, steps=args.steps, seed=0), args.top))
    if pipe.unet.config.kind == "bcos":
        print(f"\n## explanation ({args.steps} steps, every token's map)\n")
        print(
            top_operators(
                lambda: explain_prompt(pipe, args.prompt, steps=args.steps, seed=0), args.top
            )
        )


if __name__ == "__main__":
    main()
