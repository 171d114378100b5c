"""How far the B-cos weights' norms have grown: the effective learning rate along a run

    python benchmarks/weight_norms.py MODEL [MODEL ...]

A B-cos layer reads only each unit's direction w/‖w‖. Adam's steps have a size set by the
learning rate, so the step on the direction shrinks as ‖w‖ grows (as 1/‖w‖; the change of
the angle per step). For each model directory (an export of a checkpoint: ``bcosdiff export
RUN OUT --checkpoint step-N``), this prints every B-cos unit's norm over the norm it starts
at (1/√3, :data:`bcosdiff.training.recipe.INITIAL_ROW_NORM`), by part of the U-Net: the
median and the 95th percentile. A part at 2 takes half the angular step it took at the start.
"""

from __future__ import annotations

import argparse

import torch

from bcosdiff.bcos import BcosConv2d, BcosLinear
from bcosdiff.modeldir import load_unet
from bcosdiff.pipeline import resolve_model
from bcosdiff.training.recipe import INITIAL_ROW_NORM

PARTS = ("time_embed", "conv_in", "down", "middle", "up", "conv_out")


def growth_by_part(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``{part: norms / INITIAL_ROW_NORM}`` of every B-cos unit, by the U-Net's parts."""
    found: dict[str, list[torch.Tensor]] = {part: [] for part in PARTS}
    for name, module in unet.named_modules():
        if isinstance(module, BcosConv2d | BcosLinear):
            part = name.split(".")[0]
            rows = module.weight.detach().flatten(1).norm(dim=1)
            found[part].append(rows / INITIAL_ROW_NORM)
    return {part: torch.cat(rows) for part, rows in found.items() if rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="+", help="model directories or bundled names")
    args = parser.parse_args()
    print("| model | " + " | ".join(PARTS) + " | all |")
    print("| --- |" + " ---: |" * (len(PARTS) + 1))
    for model in args.model:
        unet = load_unet(resolve_model(model))
        if unet.config.kind != "bcos":
            print(f"| {model} | not a B-cos U-Net |")
            continue
        parts = growth_by_part(unet)
        every = torch.cat(list(parts.values()))

        def cell(x: torch.Tensor) -> str:
            return f"{x.median():.2f} / {x.quantile(0.95):.2f}"

        cells = [cell(parts[p]) if p in parts else "–" for p in PARTS]
        print(f"| {model} | " + " | ".join(cells) + f" | {cell(every)} |")


if __name__ == "__main__":
    main()
