"""Sampling time of a B-cos pipeline vs a vanilla pipeline of the same layout (one run).

    python benchmarks/sampling.py [--channels 32] [--size 32] [--steps 25] [--batch 1 16]

Both pipelines are built fresh (random weights: time does not depend on training) with the
CPU shapes layout and the text model of their variant; the script times deterministic DDIM
sampling of ``--steps`` steps for each batch size (median of ``--repeats``, the two
pipelines timed in turns) and prints the seconds and the B-cos / vanilla ratio, all
measured in this run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from timing import interleaved_median_seconds

from bcosdiff.pipeline import create_model_directory
from bcosdiff.request import batch_requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    unet = {
        "model_channels": args.channels,
        "channel_mult": [1, 2, 2],
        "attention_levels": [1, 2],
        "head_channels": 32,
        "norm_groups": 16,
        "sample_size": args.size,
    }
    with tempfile.TemporaryDirectory() as tmp:
        pipes = {
            v: create_model_directory(Path(tmp) / v, v, unet=unet, text={"max_length": 24})
            for v in ("bcos-x0", "vanilla")
        }
    prompt = "a photo of a big red circle on a white background"
    print(f"DDIM {args.steps} steps, {args.size}x{args.size}, model_channels {args.channels}")
    for batch in args.batch:
        calls = {
            name: lambda p=pipe, b=batch: p.sample_batch(
                batch_requests([prompt] * b, list(range(b)), steps=args.steps)
            )
            for name, pipe in pipes.items()
        }
        seconds = interleaved_median_seconds(calls, args.repeats, warmup=1)
        ratio = seconds["bcos-x0"] / seconds["vanilla"]
        print(
            f"batch {batch:>3}: B-cos {seconds['bcos-x0']:.3f} s, vanilla "
            f"{seconds['vanilla']:.3f} s, B-cos / vanilla = {ratio:.2f}x"
        )


if __name__ == "__main__":
    main()
