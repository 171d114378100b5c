"""Layer families: the same U-Net layout is built either from B-cos or from ordinary layers.

The U-Net code asks a :class:`LayerFamily` for every convolution, linear map, norm and
non-linearity, so the layout is written once and the B-cos and vanilla networks cannot drift
apart. (diffusers' ``UNet2DConditionModel`` hard-codes biased convolutions, centred norms and
ungated activations deep inside its blocks, so it cannot be turned into a B-cos network by
configuration; that is why the U-Net is our own.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from ..bcos import (
    GEGLU,
    Attention,
    BcosConv2d,
    BcosLinear,
    CentredGroupNorm,
    CentredLayerNorm,
    GatedSiLU,
    UncentredGroupNorm,
    UncentredLayerNorm,
)

__all__ = ["BcosFamily", "LayerFamily", "VanillaFamily", "group_count"]


def group_count(channels: int, preferred: int) -> int:
    """The largest group count ≤ ``preferred`` that divides ``channels``."""
    return math.gcd(channels, preferred)


class LayerFamily:
    """Factory interface; see :class:`BcosFamily` and :class:`VanillaFamily`."""

    def conv(self, cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Module:
        raise NotImplementedError

    def linear(self, fin: int, fout: int) -> nn.Module:
        raise NotImplementedError

    def group_norm(self, channels: int, groups: int) -> nn.Module:
        raise NotImplementedError

    def layer_norm(self, dim: int) -> nn.Module:
        raise NotImplementedError

    def activation(self) -> nn.Module:
        raise NotImplementedError

    def shortcut(self, cin: int, cout: int) -> nn.Module:
        """The 1×1 projection on a residual block's skip path where the width changes."""
        return self.conv(cin, cout, 1)

    def geglu(self, dim: int, inner: int) -> nn.Module:
        return GEGLU(self.linear(dim, 2 * inner))

    def attention(
        self, dim: int, heads: int, head_dim: int, context_dim: int | None = None
    ) -> Attention:
        inner = heads * head_dim
        return Attention(
            dim,
            heads,
            head_dim,
            value_proj=self.value_linear(context_dim or dim, inner),
            out_proj=self.linear(inner, dim),
            context_dim=context_dim,
        )

    def value_linear(self, fin: int, fout: int) -> nn.Module:
        return self.linear(fin, fout)


@dataclass(frozen=True)
class BcosFamily(LayerFamily):
    """Bias-free B-cos layers, bias-free norms (uncentred unless ``centred_norms``) and gated
    activations; with ``linear_shortcuts`` the residual blocks' 1×1 skip projections are
    plain unit-norm linear maps (B = 1)."""

    b: float = 2.0
    max_out: int = 1
    centred_norms: bool = False
    linear_shortcuts: bool = False

    def conv(self, cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Module:
        return BcosConv2d(cin, cout, kernel, stride, kernel // 2, b=self.b, max_out=self.max_out)

    def linear(self, fin: int, fout: int) -> nn.Module:
        return BcosLinear(fin, fout, b=self.b, max_out=self.max_out)

    def shortcut(self, cin: int, cout: int) -> nn.Module:
        # B = 1: a unit-norm linear map, without the |cos| factor that shrinks what it passes.
        if self.linear_shortcuts:
            return BcosConv2d(cin, cout, 1, b=1.0)
        return self.conv(cin, cout, 1)

    def group_norm(self, channels: int, groups: int) -> nn.Module:
        norm = CentredGroupNorm if self.centred_norms else UncentredGroupNorm
        return norm(group_count(channels, groups), channels)

    def layer_norm(self, dim: int) -> nn.Module:
        return CentredLayerNorm(dim) if self.centred_norms else UncentredLayerNorm(dim)

    def activation(self) -> nn.Module:
        return GatedSiLU()


@dataclass(frozen=True)
class VanillaFamily(LayerFamily):
    """Ordinary layers with biases, centred GroupNorm/LayerNorm and SiLU (the baseline).

    With ``biases=False`` every convolution, linear map and norm is built without its additive
    term, as in the B-cos family, and nothing else changes: the control that tells how much of
    a gap between the two kinds the missing biases make."""

    biases: bool = True

    def conv(self, cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Module:
        return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=self.biases)

    def linear(self, fin: int, fout: int) -> nn.Module:
        return nn.Linear(fin, fout, bias=self.biases)

    def value_linear(self, fin: int, fout: int) -> nn.Module:
        return nn.Linear(fin, fout, bias=False)  # as in Stable Diffusion

    def group_norm(self, channels: int, groups: int) -> nn.Module:
        if self.biases:
            return nn.GroupNorm(group_count(channels, groups), channels)
        # torch's GroupNorm has no bias-free affine form; the centred bias-free norm computes
        # exactly that outside explanation mode.
        return CentredGroupNorm(group_count(channels, groups), channels)

    def layer_norm(self, dim: int) -> nn.Module:
        return nn.LayerNorm(dim, bias=self.biases)

    def activation(self) -> nn.Module:
        return nn.SiLU()
