"""B-cosification: start a B-cos U-Net from a trained ordinary U-Net of the same layout.

After Arya et al. 2024 ("B-cosification: Transforming Deep Neural Networks to be
Inherently Interpretable"), which fine-tune a converted network instead of training the
B-cos one from scratch. The two U-Nets share their module names (one layout, two layer
families, :mod:`bcosdiff.networks.layers`), so the weights carry over by name:

* convolutions and linear maps keep their weights; a B-cos layer reads only each unit's
  direction, so the scale is irrelevant and the biases are dropped (nothing takes them);
* norms keep their per-channel scale ``γ``; their shift ``β`` is dropped with the centring;
* the input convolution reads ``(rgb, 1 − rgb)`` instead of ``2·rgb − 1``. In standardised
  units the noisy sample's two halves are ``z`` and ``−z`` (:mod:`bcosdiff.diffusion`), so
  the weights ``[W, −W]`` compute the ordinary layer's ``W·z`` exactly;
* the output convolution predicts another target in another number of channels, so it keeps
  its fresh initialisation.

The converted network is not the ordinary one (no biases, B-cos alignment, gated
activations), and samples noise until fine-tuned: the fine-tune is what the recipe measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..errors import BcosdiffError
from ..modeldir import load_unet
from ..networks import UNet

__all__ = ["Transfer", "bcosify", "bcosify_from"]


@dataclass(frozen=True)
class Transfer:
    """What :func:`bcosify` carried over: tensor names copied, mapped, left fresh, dropped."""

    copied: tuple[str, ...]
    mapped: tuple[str, ...]
    fresh: tuple[str, ...]
    dropped: tuple[str, ...]


def _input_weight(source: Tensor, target: Tensor) -> Tensor | None:
    """``[W, −W]`` for a 3-channel ordinary input layer under the 6-channel ``rgb_inv``."""
    if source.shape[1] * 2 == target.shape[1] and source.shape[0] == target.shape[0]:
        return torch.cat([source, -source], dim=1)
    return None


@torch.no_grad()
def bcosify(model: UNet, source: dict[str, Tensor]) -> Transfer:
    """Copy an ordinary U-Net's ``source`` state into the B-cos ``model`` (in place)."""
    if model.config.kind != "bcos":
        raise BcosdiffError("B-cosification starts a B-cos U-Net; this run's U-Net is not one")
    copied, mapped, fresh = [], [], []
    for name, tensor in model.state_dict().items():
        weight = source.get(name)
        if weight is not None and weight.shape == tensor.shape:
            tensor.copy_(weight)
            copied.append(name)
        elif (
            weight is not None
            and name == "conv_in.weight"
            and ((value := _input_weight(weight, tensor)) is not None)
        ):
            tensor.copy_(value)
            mapped.append(name)
        else:
            fresh.append(name)
    own = set(model.state_dict())
    dropped = tuple(sorted(k for k in source if k not in own))
    return Transfer(tuple(copied), tuple(mapped), tuple(fresh), dropped)


def bcosify_from(model: UNet, directory: str | Path) -> Transfer:
    """:func:`bcosify` from the ordinary U-Net of a model directory, checking its layout."""
    source = load_unet(Path(directory))
    if source.config.kind != "vanilla":
        raise BcosdiffError(f"{directory} is not an ordinary U-Net; B-cosification starts from one")
    layout = ("model_channels", "channel_mult", "num_res_blocks", "attention_levels")
    layout += ("head_channels", "transformer_depth", "context_dim", "time_embed_mult")
    differ = [k for k in layout if getattr(source.config, k) != getattr(model.config, k)]
    if differ:
        raise BcosdiffError(f"{directory} has another U-Net layout ({', '.join(differ)} differ)")
    transfer = bcosify(model, source.state_dict())
    if len(transfer.fresh) > 1:  # only the output layer may stay fresh
        raise BcosdiffError(
            f"{directory}: {len(transfer.fresh)} tensors found no counterpart "
            f"({', '.join(transfer.fresh[:4])}, ...)"
        )
    return transfer
