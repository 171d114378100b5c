"""Train-step time of the B-cos U-Net vs the vanilla U-Net of the same layout (one run).

    python benchmarks/train_step.py [--batch 32] [--size 32] [--channels 64] [--steps 5]

Both networks get the same layout, batch, context and optimiser; the script prints the
median seconds per AdamW step of each and their ratio, all measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bcosdiff.networks import UNet, UNetConfig


def measure(kind: str, args: argparse.Namespace) -> tuple[float, int]:
    torch.manual_seed(0)
    config = UNetConfig(
        kind=kind,
        in_channels=6,
        out_channels=6,
        sample_size=args.size,
        model_channels=args.channels,
        channel_mult=tuple(args.mult),
        attention_levels=tuple(args.attention),
        head_channels=args.head_channels,
        context_dim=384,
    )
    net = UNet(config).train()
    if args.compile:
        net = torch.compile(net)
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-4)
    x = torch.rand(args.batch, 6, args.size, args.size)
    target = torch.rand_like(x)
    t = torch.randint(0, 1000, (args.batch,))
    context = torch.randn(args.batch, args.tokens, 384)
    mask = torch.ones(args.batch, args.tokens, dtype=torch.bool)
    mask[:, args.tokens // 2 :] = False
    times = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss = (net(x, t, context, mask) - target).square().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times), sum(p.numel() for p in net.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--mult", type=int, nargs="+", default=[1, 2, 2])
    parser.add_argument("--attention", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--head-channels", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="torch.compile both networks")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
        f"{args.size}x{args.size}, channels {args.channels} x {args.mult}"
    )
    results = {kind: measure(kind, args) for kind in ("bcos", "vanilla")}
    for kind, (seconds, params) in results.items():
        print(
            f"{kind:8s} {params / 1e6:6.2f} M params  {seconds:.3f} s/step  "
            f"{args.batch / seconds:7.1f} images/s"
        )
    ratio = results["bcos"][0] / results["vanilla"][0]
    print(f"B-cos / vanilla train-step time: {ratio:.2f}x")


if __name__ == "__main__":
    main()
