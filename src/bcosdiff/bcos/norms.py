"""Bias-free normalisation layers, uncentred (the default) and centred.

Uncentred: ``y = γ · x / sqrt(Var[x] + eps)`` with the variance taken over the normalised
group; the mean is *not* subtracted and there is no additive shift, so the layer is a
per-sample scaling of its input (dynamic linear). In explanation mode the statistic is
detached. This is the "uncentred" norm of B-cos v2 with its bias removed; the optional ``γ``
is a learnable per-channel scale, itself linear.

Centred: ``y = γ · (x − mean[x]) / sqrt(Var[x] + eps)``. Subtracting the group's own mean
is a fixed linear map of the sample (``x ↦ (I − 11ᵀ/M) x``), so the layer is still dynamic
linear with no additive term: in explanation mode only ``1/sqrt(Var[x] + eps)`` is
detached, and contributions still add up to the output. This is B-cos v2's
``DetachableGroupNorm2d`` / ``DetachableLayerNorm`` without bias, the norm the paper
authors' U-Net trains with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import forward_ad

from .layers import fused_training_enabled
from .mode import DetachableModule

__all__ = [
    "CentredGroupNorm",
    "CentredLayerNorm",
    "UncentredGroupNorm",
    "UncentredLayerNorm",
    "centred_normalise",
    "uncentred_normalise",
]


def _group_statistics(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """``(mean, 1/sqrt(var + eps))`` over the last dimension of ``x`` ``(…, M)``.

    Computed by the fused native layer norm, which returns both statistics: ``torch.var``
    reduces about ten times slower on the CPU (measured: 195 µs vs 8 µs for 16 groups of
    1024 numbers), and the norms were the largest single cost of a sampling step."""
    _, mean, rstd = torch.native_layer_norm(x, (x.shape[-1],), None, None, eps)
    return mean, rstd


def _recording(x: Tensor) -> bool:
    """Whether autograd or forward-mode AD records this call (otherwise it is sampling)."""
    return torch.is_grad_enabled() or forward_ad.unpack_dual(x).tangent is not None


class _Uncentred(torch.autograd.Function):
    """``y = x · r`` with ``r = 1/sqrt(Var[x] + eps)`` over the last dimension (``M``
    numbers), with hand-written derivatives:

    ``∂L/∂x = r·g − r³/M · (Σ g·x) · (x − mean)`` and, forward, ``dy = r·dx + x·dr`` with
    ``dr = −r³/M · Σ (x − mean)·dx``."""

    generate_vmap_rule = True  # batched JVPs (gradient × input)

    @staticmethod
    def forward(x: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
        mean, rstd = _group_statistics(x, eps)
        return x * rstd, mean, rstd

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, _ = inputs
        _, mean, rstd = output
        ctx.mark_non_differentiable(mean, rstd)
        ctx.save_for_backward(x, mean, rstd)
        ctx.save_for_forward(x, mean, rstd)

    @staticmethod
    def backward(ctx, grad: Tensor, _mean: Tensor, _rstd: Tensor):
        x, mean, rstd = ctx.saved_tensors
        # k = r³/M · Σ g·x per group; ∂L/∂x = r·g − k·x + k·mean, in two full-size passes.
        k = torch.linalg.vecdot(grad, x).unsqueeze(-1).mul_(rstd.pow(3) / x.shape[-1])
        return torch.addcmul(k * mean, grad, rstd).addcmul_(k, x, value=-1.0), None

    @staticmethod
    def jvp(ctx, dx: Tensor, _eps) -> tuple[Tensor, None, None]:
        x, mean, rstd = ctx.saved_tensors
        size = x.shape[-1]
        drstd = -(rstd.pow(3) / size) * ((x - mean) * dx).sum(-1, keepdim=True)
        return rstd * dx + x * drstd, None, None


class _ScaledGroupNorm(torch.autograd.Function):
    """The whole group norm with its scale: ``y = γ_c · x · r_g`` for ``x`` of shape
    ``(N, C, *)`` in ``G`` groups of ``M`` numbers, ``r_g = 1/sqrt(Var_g[x] + eps)``, with
    hand-written derivatives.

    With ``p_c = Σ_spatial g·x`` per sample and channel (one pass over the output),
    ``∂L/∂γ_c = Σ_n r·p_c`` and ``∂L/∂x = r γ_c g − k_g (x − mean_g)`` with
    ``k_g = r³/M · Σ_{c∈g} γ_c p_c``: three full-size passes backwards and one saved tensor,
    where autograd through the norm and a separate ``γ`` multiply takes six and two. The
    forward computes the numbers of the unfused layer (``x·r``, then ``·γ``)."""

    generate_vmap_rule = True  # batched JVPs (gradient × input)

    @staticmethod
    def forward(x: Tensor, weight: Tensor, groups: int, eps: float):
        grouped = x.reshape(x.shape[0], groups, -1)
        mean, rstd = _group_statistics(grouped, eps)
        y = (grouped * rstd).view_as(x)
        return y.mul_(weight.view(1, -1, *([1] * (x.dim() - 2)))), mean, rstd

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, groups, _ = inputs
        _, mean, rstd = output
        ctx.mark_non_differentiable(mean, rstd)
        ctx.groups = groups
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.save_for_forward(x, weight, mean, rstd)

    @staticmethod
    def _split(x: Tensor, groups: int) -> Tensor:
        """``(N, C, *)`` as ``(N, G, C/G, spatial)``."""
        return x.reshape(x.shape[0], groups, x.shape[1] // groups, -1)

    @staticmethod
    def backward(ctx, grad: Tensor, _mean, _rstd):
        x, weight, mean, rstd = ctx.saved_tensors
        split = _ScaledGroupNorm._split
        g4, x4 = split(grad, ctx.groups), split(x, ctx.groups)
        gamma = weight.view(ctx.groups, -1)  # (G, C/G)
        per_channel = torch.linalg.vecdot(g4, x4)  # p: (N, G, C/G)
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = (per_channel * rstd).sum(0).reshape(weight.shape)
        grad_x = None
        if ctx.needs_input_grad[0]:
            size = x4.shape[2] * x4.shape[3]
            k = (per_channel * gamma).sum(-1, keepdim=True).mul_(rstd.pow(3) / size)
            k = k.unsqueeze(-1)  # (N, G, 1, 1)
            factor = (rstd * gamma).unsqueeze(-1)  # r·γ: (N, G, C/G, 1)
            grad_x = torch.addcmul(k * mean.unsqueeze(-1), g4, factor)
            grad_x = grad_x.addcmul_(k, x4, value=-1.0).view_as(x)
        return grad_x, grad_weight, None, None

    @staticmethod
    def jvp(ctx, dx: Tensor | None, d_weight: Tensor | None, _groups, _eps):
        x, weight, mean, rstd = ctx.saved_tensors
        split = _ScaledGroupNorm._split
        x4 = split(x, ctx.groups)
        gamma = weight.view(ctx.groups, -1, 1)  # (G, C/G, 1)
        r = rstd.unsqueeze(-1)  # (N, G, 1, 1)
        tangent = torch.zeros_like(x4)
        if dx is not None:
            dx4 = split(dx, ctx.groups)
            centred = x4 - mean.unsqueeze(-1)
            size = x4.shape[2] * x4.shape[3]
            dr = -(r.pow(3) / size) * (centred * dx4).sum((-2, -1), keepdim=True)
            tangent = tangent + gamma * (r * dx4 + x4 * dr)
        if d_weight is not None:
            tangent = tangent + x4 * r * d_weight.view(ctx.groups, -1, 1)
        return tangent.view_as(x), None, None


def uncentred_normalise(x: Tensor, eps: float, detach: bool, shared: bool = False) -> Tensor:
    """Divide ``x`` by its standard deviation over the last dimension (mean kept in ``x``);
    ``detach`` cuts the statistic from autograd (explanation mode); with ``shared`` the
    statistic of batch row 0 is used for every row (linear replay)."""
    if not detach and not shared:
        if not _recording(x):
            # Sampling: the same numbers without the autograd function's per-call overhead
            # (26 µs of self time per call in a profile; 51 norm calls per U-Net call).
            return x * _group_statistics(x, eps)[1]
        return _Uncentred.apply(x, eps)[0]
    # detach() (not only no_grad) also cuts forward-mode tangents: the statistic is a
    # constant factor of the explanation's linear map.
    _, rstd = _group_statistics((x[:1] if shared else x).detach(), eps)
    return x * rstd


class _GroupNormBase(DetachableModule):
    """Groups, ``eps`` and the optional per-channel scale ``γ`` of a bias-free group norm."""

    label = ""  # shown by ``repr`` after eps

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, scale: bool = True):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"{num_channels} channels cannot be split into {num_groups} groups")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels)) if scale else None

    def extra_repr(self) -> str:
        mode = ", explanation_mode=True" if self.detach_dynamic else ""
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}{self.label}{mode}"


class _LayerNormBase(DetachableModule):
    """``eps`` and the optional per-feature scale ``γ`` of a bias-free layer norm."""

    label = ""

    def __init__(self, dim: int, eps: float = 1e-5, scale: bool = True):
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if scale else None

    def extra_repr(self) -> str:
        mode = ", explanation_mode=True" if self.detach_dynamic else ""
        return f"{self.dim}, eps={self.eps}{self.label}{mode}"


class UncentredGroupNorm(_GroupNormBase):
    """Group norm over ``(N, C, *)`` without centring and without bias."""

    def forward(self, x: Tensor) -> Tensor:
        if (
            self.weight is not None
            and not self.detach_dynamic
            and not self.shared_factors
            and fused_training_enabled()
            and _recording(x)
        ):
            return _ScaledGroupNorm.apply(x, self.weight, self.num_groups, self.eps)[0]
        grouped = x.reshape(x.shape[0], self.num_groups, -1)  # (N, G, C/G · spatial)
        y = uncentred_normalise(grouped, self.eps, self.detach_dynamic, self.shared_factors)
        y = y.view_as(x)
        if self.weight is not None:
            scale = self.weight.view(1, -1, *([1] * (x.dim() - 2)))
            # Sampling scales the fresh ``y`` in place (the same numbers).
            y = y * scale if torch.is_grad_enabled() else y.mul_(scale)
        return y


class UncentredLayerNorm(_LayerNormBase):
    """Layer norm over the last dimension without centring and without bias."""

    def forward(self, x: Tensor) -> Tensor:
        y = uncentred_normalise(x, self.eps, self.detach_dynamic, self.shared_factors)
        return y * self.weight if self.weight is not None else y


def centred_normalise(x: Tensor, eps: float, shared: bool = False) -> Tensor:
    """``(x − mean) / sqrt(Var + eps)`` over the last dimension with the statistic detached
    (explanation mode); the mean stays attached, as it is a linear map of each row. With
    ``shared`` the statistic of batch row 0 serves every row (linear replay)."""
    _, rstd = _group_statistics((x[:1] if shared else x).detach(), eps)
    return (x - x.mean(-1, keepdim=True)) * rstd


class CentredGroupNorm(_GroupNormBase):
    """Group norm over ``(N, C, *)`` with centring and without bias."""

    label = ", centred"

    def forward(self, x: Tensor) -> Tensor:
        if not self.detach_dynamic and not self.shared_factors:
            # Training and sampling: the native kernel (forward and backward are exact).
            return F.group_norm(x, self.num_groups, self.weight, None, self.eps)
        grouped = x.reshape(x.shape[0], self.num_groups, -1)  # (N, G, C/G · spatial)
        y = centred_normalise(grouped, self.eps, self.shared_factors).view_as(x)
        if self.weight is not None:
            y = y * self.weight.view(1, -1, *([1] * (x.dim() - 2)))
        return y


class CentredLayerNorm(_LayerNormBase):
    """Layer norm over the last dimension with centring and without bias."""

    label = ", centred"

    def forward(self, x: Tensor) -> Tensor:
        if not self.detach_dynamic and not self.shared_factors:
            return F.layer_norm(x, (self.dim,), self.weight, None, self.eps)
        y = centred_normalise(x, self.eps, self.shared_factors)
        return y * self.weight if self.weight is not None else y
