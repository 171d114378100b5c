"""Train-step time of the B-cos U-Net vs the vanilla U-Net of the same layout (one run).

    python benchmarks/train_step.py [--batch 32] [--size 32] [--channels 32] [--rounds 8]
                                    [--unfused] [--b 2] [--max-out 1] [--centred-norms]

Both networks get the same layout, batch, context and optimiser. The steps are interleaved
(one step of each network per round), so drift in the machine's speed affects every network
alike; the script prints the median seconds per AdamW step of each and their ratios, all
measured in this run. ``--unfused`` adds the B-cos network with its fused B = 2 training
functions switched off (autograd through the elementary operations), the before figure of
that change. ``--b``, ``--max-out`` and ``--centred-norms`` set the B-cos network's options
(the recipe arms of ``docs/training.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from bcosdiff.bcos import fused_layers
from bcosdiff.networks import UNet, UNetConfig


def build(kind: str, args: argparse.Namespace):
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
        **(
            dict(b=args.b, max_out=args.max_out, centred_norms=args.centred_norms)
            if kind == "bcos"
            else {}
        ),
    )
    net = UNet(config).train()
    if args.compile:
        net = torch.compile(net)
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-4)
    return net, optimiser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--mult", type=int, nargs="+", default=[1, 2, 2])
    parser.add_argument("--attention", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--head-channels", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--unfused", action="store_true", help="also time the unfused B-cos step")
    parser.add_argument("--compile", action="store_true", help="torch.compile every network")
    parser.add_argument("--b", type=float, default=2.0, help="the B-cos network's B")
    parser.add_argument("--max-out", type=int, default=1, help="the B-cos network's MaxOut")
    parser.add_argument("--centred-norms", action="store_true", help="centred B-cos norms")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
        f"{args.size}x{args.size}, channels {args.channels} x {args.mult}, "
        f"{args.rounds} interleaved rounds after {args.warmup} warm-up; B-cos: B = {args.b:g}, "
        f"max_out {args.max_out}, {'centred' if args.centred_norms else 'uncentred'} norms"
    )
    runs = {"bcos": ("bcos", True), "vanilla": ("vanilla", True)}
    if args.unfused:
        runs["bcos-unfused"] = ("bcos", False)
    nets = {name: build(kind, args) for name, (kind, _) in runs.items()}
    x = torch.rand(args.batch, 6, args.size, args.size)
    target = torch.rand_like(x)
    t = torch.randint(0, 1000, (args.batch,))
    context = torch.randn(args.batch, args.tokens, 384)
    mask = torch.ones(args.batch, args.tokens, dtype=torch.bool)
    mask[:, args.tokens // 2 :] = False
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(args.warmup + args.rounds):
        for name, (net, optimiser) in nets.items():
            fused = runs[name][1]
            switch = contextlib.nullcontext() if fused else fused_layers(False)
            with switch:
                start = time.perf_counter()
                loss = (net(x, t, context, mask) - target).square().mean()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                elapsed = time.perf_counter() - start
            if i >= args.warmup:
                times[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in medians.items():
        params = sum(p.numel() for p in nets[name][0].parameters())
        print(
            f"{name:13s} {params / 1e6:6.2f} M params  {seconds:.3f} s/step  "
            f"{args.batch / seconds:7.1f} images/s"
        )
    print(f"B-cos / vanilla train-step time: {medians['bcos'] / medians['vanilla']:.2f}x")
    if args.unfused:
        ratio = medians["bcos-unfused"] / medians["vanilla"]
        gain = medians["bcos-unfused"] / medians["bcos"]
        print(f"unfused B-cos / vanilla: {ratio:.2f}x; fused speed-up: {gain:.2f}x")


if __name__ == "__main__":
    main()
