"""Cost of explaining vs generating, and of the authors' per-patch procedure (one run).

    python benchmarks/explain_cost.py [--model NAME_OR_DIR] [--steps 25] [--repeats 3]

Times, for the same prompt and seed: ``generate``; ``explain`` with relevance (one VJP),
reconstruction (one JVP) and full-resolution heat maps for every token (batched JVPs); and
the authors' reference procedure (one backward pass per output channel and 8×8 patch).
Prints the measured seconds and the ratios explain/generate and reference/explain.
"""

from __future__ import annotations

import argparse
import time

from timing import interleaved_median_seconds

from bcosdiff.explain import patch_backward_contributions
from bcosdiff.pipeline import load_pipeline
from bcosdiff.service import explain_prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--prompt", default="a photo of a big red circle on a white background")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    pipe = load_pipeline(args.model)
    cond = pipe.encode([args.prompt])

    seconds = interleaved_median_seconds(
        {
            "generate": lambda: pipe.generate(args.prompt, steps=args.steps, seed=0),
            "explain": lambda: explain_prompt(pipe, args.prompt, steps=args.steps, seed=0),
        },
        args.repeats,
        warmup=1,
    )
    generate, explain = seconds["generate"], seconds["explain"]
    tokens = int(cond.mask.sum())
    print(
        f"model {pipe.name}, {pipe.sample_size}x{pipe.sample_size}, {args.steps} steps, "
        f"{tokens} prompt tokens"
    )
    print(
        f"generate: {generate:.2f} s   explain (relevance + reconstruction + "
        f"{tokens} heat maps): {explain:.2f} s   explain/generate = {explain / generate:.2f}x"
    )
    if not args.skip_reference:
        start = time.perf_counter()
        patch_backward_contributions(
            pipe.unet,
            pipe.process,
            steps=args.steps,
            context=cond.embeddings,
            x_T=pipe.initial_noise(0),
            context_mask=cond.mask,
            patch=8,
        )
        reference = time.perf_counter() - start
        passes = pipe.process.channels * (pipe.sample_size // 8) ** 2
        print(
            f"authors' procedure ({passes} backward passes, 8x8-patch maps): {reference:.2f} s"
            f"   reference/explain = {reference / explain:.1f}x"
        )


if __name__ == "__main__":
    main()
