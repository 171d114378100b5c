"""The text-conditioned U-Net in the layout of Stable Diffusion 2.1, B-cos or vanilla.

Differences from SD 2.1 (as in the paper, App. C): pixel space with 6 input/output channels
(the ``(rgb, 1-rgb)`` encoding), one residual block per level, and widths set per level by
``channel_mult`` (the paper does not double channels after the first downsampling). Spatial
transformers (self- plus cross-attention) sit at the levels listed in ``attention_levels``
and in the middle block.

With ``kind="bcos"`` every convolution and linear map is a B-cos layer, norms are bias-free
(uncentred, or centred with ``centred_norms``), SiLU/GEGLU gates are detachable and attention
weights are dynamic factors, so in explanation mode the network is exactly linear in
``(sample, time features, context)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..configuration import ConfigRecord
from .blocks import (
    Downsample,
    ResBlock,
    SpatialTransformer,
    TimeEmbedding,
    Upsample,
    sinusoidal_features,
)
from .layers import BcosFamily, LayerFamily, VanillaFamily

__all__ = ["UNet", "UNetConfig"]

KINDS = ("bcos", "vanilla")
TIME_EMBEDDINGS = ("bcos", "ordinary")


@dataclass(frozen=True)
class UNetConfig(ConfigRecord):
    config_name = "U-Net"

    kind: str = "bcos"
    in_channels: int = 6
    out_channels: int = 6
    sample_size: int = 32
    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 1, 2)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = (1, 2)
    head_channels: int = 32
    transformer_depth: int = 1
    context_dim: int = 384
    norm_groups: int = 32
    time_embed_mult: int = 4
    b: float = 2.0
    max_out: int = 1
    # B-cos only: subtract each group's mean in the norms (still bias-free and dynamic
    # linear); the ordinary U-Net's norms are always centred.
    centred_norms: bool = False
    # "bcos": the time-step MLP is part of the explained network, which is then linear in
    # the sinusoidal features. "ordinary": an MLP with biases (as in the paper authors'
    # code) outside it; its output is the time input the explanations take as given.
    time_embedding: str = "bcos"
    # B-cos only: the residual blocks' 1×1 skip projections (where the width changes) as
    # plain unit-norm linear maps (B = 1), so the encoder's detail reaches the decoder
    # without the |cos| factor; still bias-free and linear.
    linear_shortcuts: bool = False
    # B-cos only: the B of every layer that works at full resolution (conv_in, the first
    # level's residual blocks and downsampling, the up path's last level with the upsampling
    # into it, conv_out); None: ``b``. The shortest path from input to output runs through
    # these layers alone (conv_in, the first skip, conv_out).
    full_resolution_b: float | None = None
    # Ordinary U-Net only: False builds every convolution, linear map and norm without its
    # bias (the B-cos U-Net never has one), a control for what the biases are worth.
    vanilla_biases: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        object.__setattr__(self, "attention_levels", tuple(int(a) for a in self.attention_levels))
        problems = []
        if self.kind not in KINDS:
            problems.append(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            problems.append("channel_mult must be a non-empty list of positive integers")
        levels = len(self.channel_mult)
        if any(not 0 <= a < levels for a in self.attention_levels):
            problems.append(f"attention_levels must lie in [0, {levels - 1}]")
        if self.sample_size % 2 ** (levels - 1):
            problems.append(
                f"sample_size {self.sample_size} is not divisible by 2^{levels - 1} "
                f"(one halving per level after the first)"
            )
        for name in (
            "in_channels",
            "out_channels",
            "model_channels",
            "num_res_blocks",
            "head_channels",
            "transformer_depth",
            "context_dim",
            "norm_groups",
            "time_embed_mult",
            "max_out",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.sample_size < 1:
            problems.append("sample_size must be >= 1")
        if self.b < 1:
            problems.append("b must be >= 1")
        if self.full_resolution_b is not None:
            if self.kind != "bcos":
                problems.append("full_resolution_b applies to kind 'bcos'")
            elif self.full_resolution_b < 1:
                problems.append("full_resolution_b must be >= 1")
        if self.time_embedding not in TIME_EMBEDDINGS:
            problems.append(
                f"time_embedding must be one of {TIME_EMBEDDINGS}, got {self.time_embedding!r}"
            )
        if self.kind == "bcos" and not self.vanilla_biases:
            problems.append("vanilla_biases applies to kind 'vanilla' (B-cos layers have no bias)")
        if problems:
            raise ValueError("invalid U-Net config: " + "; ".join(problems))

    def family(self, level: int | None = None) -> LayerFamily:
        """The layers of resolution level ``level`` (0: full resolution; None: the middle
        and the time embedding)."""
        if self.kind == "bcos":
            full = level == 0 and self.full_resolution_b is not None
            return BcosFamily(
                b=self.full_resolution_b if full else self.b,
                max_out=self.max_out,
                centred_norms=self.centred_norms,
                linear_shortcuts=self.linear_shortcuts,
            )
        return VanillaFamily(biases=self.vanilla_biases)


class _Stage(nn.Module):
    """A residual block, optionally followed by a spatial transformer."""

    def __init__(self, res: ResBlock, attn: SpatialTransformer | None):
        super().__init__()
        self.res = res
        self.attn = attn

    def forward(self, h: Tensor, temb: Tensor, context: Tensor, mask: Tensor | None) -> Tensor:
        h = self.res(h, temb)
        return self.attn(h, context, mask) if self.attn is not None else h


class UNet(nn.Module):
    """``UNet(config)(sample, timesteps, context, context_mask) -> prediction``.

    ``sample``: ``(N, in_channels, H, W)``; ``timesteps``: ``(N,)``; ``context``:
    ``(N, L, context_dim)``; ``context_mask``: ``(N, L)`` bool, ``True`` for tokens that may
    be attended (``None``: all).
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        centre = config.family()  # the middle blocks and the time embedding
        mc, groups = config.model_channels, config.norm_groups
        time_dim = mc * config.time_embed_mult
        # The time input of ``denoise``: the sinusoidal features, or with an ordinary time
        # embedding that MLP's output (``time_mlp``, evaluated in ``time_features``).
        self.time_mlp: nn.Module | None = None
        if config.time_embedding == "ordinary":
            self.time_mlp = TimeEmbedding(VanillaFamily(), mc, time_dim)
            self.time_embed: nn.Module = nn.Identity()
        else:
            self.time_embed = TimeEmbedding(centre, mc, time_dim)

        def stage(cin: int, cout: int, level: int | None) -> _Stage:
            fam = config.family(level)
            attn = None
            if level is None or level in config.attention_levels:
                attn = SpatialTransformer(
                    fam,
                    cout,
                    config.head_channels,
                    config.context_dim,
                    config.transformer_depth,
                    groups,
                )
            return _Stage(ResBlock(fam, cin, cout, time_dim, groups), attn)

        outer = config.family(0)
        self.conv_in = outer.conv(config.in_channels, mc, 3)
        self.down = nn.ModuleList()
        skip_channels = [mc]
        ch = mc
        last = len(config.channel_mult) - 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                self.down.append(stage(ch, mult * mc, level))
                ch = mult * mc
                skip_channels.append(ch)
            if level != last:
                self.down.append(Downsample(config.family(level), ch))
                skip_channels.append(ch)

        self.middle = nn.ModuleList(
            [stage(ch, ch, None), _Stage(ResBlock(centre, ch, ch, time_dim, groups), None)]
        )

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                self.up.append(stage(ch + skip_channels.pop(), mult * mc, level))
                ch = mult * mc
                if level != 0 and i == config.num_res_blocks:
                    # Its convolution runs at the next level's (finer) resolution.
                    self.up.append(Upsample(config.family(level - 1), ch))

        self.conv_out = nn.Sequential(
            outer.group_norm(ch, groups), outer.activation(), outer.conv(ch, config.out_channels, 3)
        )

    def time_features(self, timesteps: Tensor) -> Tensor:
        """The time input of :meth:`denoise`: sinusoidal features of the time steps, passed
        through the ordinary time MLP when the config has one."""
        features = sinusoidal_features(timesteps, self.config.model_channels)
        if self.time_mlp is None:
            return features
        return self.time_mlp(features.to(next(self.time_mlp.parameters()).dtype))

    def denoise(
        self,
        sample: Tensor,
        time_features: Tensor,
        context: Tensor,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        """The network as a function of its three inputs (linear in all three when explaining)."""
        temb = self.time_embed(time_features)
        h = self.conv_in(sample)
        skips = [h]
        for block in self.down:
            h = block(h, temb, context, context_mask) if isinstance(block, _Stage) else block(h)
            skips.append(h)
        for block in self.middle:
            h = block(h, temb, context, context_mask)
        for block in self.up:
            if isinstance(block, _Stage):
                h = block(torch.cat([h, skips.pop()], dim=1), temb, context, context_mask)
            else:
                h = block(h)
        return self.conv_out(h)

    def forward(
        self,
        sample: Tensor,
        timesteps: Tensor,
        context: Tensor,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        features = self.time_features(timesteps).to(sample.dtype)
        return self.denoise(sample, features, context, context_mask)
