"""Building blocks of the Stable-Diffusion-style U-Net, written against a LayerFamily."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import LayerFamily

__all__ = [
    "Downsample",
    "ResBlock",
    "SpatialTransformer",
    "TimeEmbedding",
    "TransformerBlock",
    "Upsample",
    "sinusoidal_features",
]


def sinusoidal_features(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """``[cos(t·f_k), sin(t·f_k)]`` with ``f_k = max_period^(-k/half)`` (as in SD): ``(N, dim)``."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, dtype=torch.float32, device=timesteps.device)
        / half
    )
    args = timesteps.float()[:, None] * freqs[None]
    features = torch.cat([args.cos(), args.sin()], dim=-1)
    if dim % 2:
        features = F.pad(features, (0, 1))
    return features


class TimeEmbedding(nn.Module):
    """MLP on the sinusoidal features: ``linear → act → linear``."""

    def __init__(self, family: LayerFamily, features: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(
            family.linear(features, dim), family.activation(), family.linear(dim, dim)
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


class ResBlock(nn.Module):
    """``skip(x) + conv(act(norm(conv(act(norm(x)))) + emb(t)))`` — the time embedding is added."""

    def __init__(self, family: LayerFamily, cin: int, cout: int, time_dim: int, groups: int):
        super().__init__()
        self.in_layers = nn.Sequential(
            family.group_norm(cin, groups), family.activation(), family.conv(cin, cout, 3)
        )
        self.emb_layers = nn.Sequential(family.activation(), family.linear(time_dim, cout))
        self.out_layers = nn.Sequential(
            family.group_norm(cout, groups), family.activation(), family.conv(cout, cout, 3)
        )
        self.skip = nn.Identity() if cin == cout else family.shortcut(cin, cout)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.in_layers(x) + self.emb_layers(temb)[:, :, None, None]
        return self.skip(x) + self.out_layers(h)


class TransformerBlock(nn.Module):
    """Self-attention, cross-attention to the prompt, and a GEGLU feed-forward (pre-norm)."""

    def __init__(self, family: LayerFamily, dim: int, heads: int, head_dim: int, context_dim: int):
        super().__init__()
        self.norm1 = family.layer_norm(dim)
        self.attn1 = family.attention(dim, heads, head_dim)
        self.norm2 = family.layer_norm(dim)
        self.attn2 = family.attention(dim, heads, head_dim, context_dim)
        self.norm3 = family.layer_norm(dim)
        self.ff = nn.Sequential(family.geglu(dim, 4 * dim), family.linear(4 * dim, dim))

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None) -> Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context, context_mask)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """``x + proj_out(blocks(proj_in(norm(x))))`` over the flattened spatial positions."""

    def __init__(
        self,
        family: LayerFamily,
        channels: int,
        head_channels: int,
        context_dim: int,
        depth: int,
        groups: int,
    ):
        super().__init__()
        heads = max(1, channels // head_channels)
        self.norm = family.group_norm(channels, groups)
        self.proj_in = family.linear(channels, channels)
        self.blocks = nn.ModuleList(
            TransformerBlock(family, channels, heads, channels // heads, context_dim)
            for _ in range(depth)
        )
        self.proj_out = family.linear(channels, channels)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None) -> Tensor:
        n, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))
        for block in self.blocks:
            tokens = block(tokens, context, context_mask)
        return x + self.proj_out(tokens).transpose(1, 2).reshape(n, c, h, w)


class Downsample(nn.Module):
    def __init__(self, family: LayerFamily, channels: int):
        super().__init__()
        self.conv = family.conv(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, family: LayerFamily, channels: int):
        super().__init__()
        self.conv = family.conv(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
