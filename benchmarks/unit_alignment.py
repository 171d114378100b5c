"""How well each B-cos layer's units align with their inputs on held-out scenes

    python benchmarks/unit_alignment.py --data data/emoji --model MODEL [--model MODEL ...] \
        [--t 100] [--scenes 32] [--layers skip]

A B-cos unit scales its linear response ŵᵀx by |cos(x, w)|^(B−1): the better aligned, the
more it passes. For each model this runs the held-out scenes of the validation loss, noised
at one time step, and prints every B-cos layer's mean |cos| over units, positions and
scenes, with the norms of its input and output (``--layers skip``: only the residual blocks'
skip projections). A unit with |cos| = 0.05 passes one twentieth of its linear response.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from bcosdiff.bcos import BcosConv2d, BcosLinear
from bcosdiff.data.emoji_scenes import HELD_OUT_EMOJI_TEMPLATES, EmojiScenes
from bcosdiff.diffusion import encode_image
from bcosdiff.evaluation.validation import VALIDATION_SEED
from bcosdiff.pipeline import load_pipeline


def alignment(layer: BcosConv2d | BcosLinear, x: torch.Tensor) -> float:
    """Mean |cos| between ``layer``'s unit weights and its inputs ``x``."""
    if isinstance(layer, BcosConv2d):
        response = F.conv2d(
            x, layer.unit_weight(), None, layer.stride, layer.padding, layer.dilation, layer.groups
        )
        return float((response / layer.patch_norm(x)).abs().mean())
    response = F.linear(x, layer.unit_weight())
    return float((response / torch.linalg.vector_norm(x, dim=-1, keepdim=True)).abs().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="an emoji import (bcosdiff data emoji)")
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--t", type=int, default=100, help="the noise level of the scenes")
    parser.add_argument("--scenes", type=int, default=32)
    parser.add_argument("--layers", choices=("all", "skip"), default="all")
    args = parser.parse_args()
    held_out = EmojiScenes(args.data, seed=VALIDATION_SEED, templates=HELD_OUT_EMOJI_TEMPLATES)
    items = [held_out[i] for i in range(args.scenes)]
    rgb = torch.stack([item["image"] for item in items])
    noise = torch.randn(rgb.shape, generator=torch.Generator().manual_seed(0))
    print("| model | layer | B | mean \\|cos\\| | input norm | output norm |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for model in args.model:
        pipe = load_pipeline(model)
        if pipe.unet.config.kind != "bcos":
            print(f"| {model} | not a B-cos U-Net | | | | |")
            continue
        rows: list[tuple] = []

        def record(name, rows=rows):
            def hook(layer, inputs, output):
                (x,) = inputs
                rows.append((name, layer.b, alignment(layer, x), float(x.norm()), output.norm()))

            return hook

        for name, module in pipe.unet.named_modules():
            chosen = args.layers == "all" or name.endswith(".skip")
            if isinstance(module, BcosConv2d | BcosLinear) and chosen:
                module.register_forward_hook(record(name))
        cond = pipe.text([item["caption"] for item in items])
        x0 = encode_image(rgb, pipe.process.encoding)
        eps = torch.cat([noise, -noise], dim=1) if pipe.process.channels == 6 else noise
        steps = torch.full((len(items),), args.t)
        with torch.no_grad():
            pipe.unet(pipe.process.q_sample(x0, steps, eps), steps, cond.embeddings, cond.mask)
        for name, b, cos, x_norm, out_norm in rows:
            print(f"| {model} | {name} | {b:g} | {cos:.3f} | {x_norm:.1f} | {out_norm:.1f} |")


if __name__ == "__main__":
    main()
