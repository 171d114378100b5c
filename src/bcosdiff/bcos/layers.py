"""B-cos linear and convolution layers.

The B-cos transform of an input ``x`` with weight ``w`` is::

    f(x; w) = |cos(x, w)|^(B-1) · (ŵᵀ x),     ŵ = w / ‖w‖,  cos(x, w) = ŵᵀx / ‖x‖

There is no bias. For a convolution, ``‖x‖`` is the norm of each input patch (over all
channels of the filter's group and all kernel positions). ``B = 1`` gives a plain linear map
with unit-norm weights. With MaxOut (``max_out = M > 1``) each output unit computes ``M``
candidate linear responses and keeps the largest before the scale is applied.

Both layers share one implementation of the scale (:func:`bcos_scale`); they differ only in
how the linear response and the input norm are obtained. The numbers match the official
B-cos v2 package (``bcos.modules.BcosConv2d`` / ``BcosLinear``), which the tests check.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mode import DetachableModule

__all__ = ["BcosConv2d", "BcosLinear", "bcos_scale"]

# Stabilisers of the reference implementation (B-cos v2).
_CONV_NORM_EPS = 1e-6  # added to the squared patch norm
_LINEAR_NORM_EPS = 1e-12  # added to the vector norm
_COS_EPS = 1e-6  # added to |cos| for B != 2


class _SquareScale(torch.autograd.Function):
    """``y = out·|out| / norm`` (the B = 2 scale) with hand-written derivatives.

    Autograd through ``abs``/``div``/``mul`` stores three intermediates and runs about eight
    element-wise kernels backwards; this keeps ``out`` and ``norm`` only.
    ``∂y/∂out = 2|out|/norm`` and ``∂y/∂norm = -y/norm`` (summed over broadcast dimensions).
    """

    generate_vmap_rule = True  # batched JVPs outside explanation mode (gradient × input)

    @staticmethod
    def forward(out: Tensor, norm: Tensor) -> Tensor:
        return out * out.abs() / norm

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        out, norm = inputs
        ctx.save_for_backward(out, norm)
        ctx.save_for_forward(out, norm)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        out, norm = ctx.saved_tensors
        # t = grad·|out|/norm serves both: ∂/∂out = 2t, ∂/∂norm = −Σ t·out / norm (the
        # division after the sum, on the small reduced tensor).
        t = grad * out.abs()
        t.div_(norm)
        grad_out = grad_norm = None
        if ctx.needs_input_grad[1]:
            grad_norm = (t * out).sum_to_size(norm.shape).div_(norm).neg_()
        if ctx.needs_input_grad[0]:
            grad_out = t.mul_(2.0)
        return grad_out, grad_norm

    @staticmethod
    def jvp(ctx, d_out: Tensor | None, d_norm: Tensor | None) -> Tensor:
        out, norm = ctx.saved_tensors
        tangent = torch.zeros_like(out)
        if d_out is not None:
            tangent = tangent + 2.0 * out.abs() * d_out / norm
        if d_norm is not None:
            tangent = tangent - out * out.abs() * d_norm / norm.square()
        return tangent


def bcos_scale(out: Tensor, norm: Tensor, b: float, detach: bool, shared: bool = False) -> Tensor:
    """Return ``|cos|^(B-1) · out`` with ``cos = out / norm``.

    ``out`` is the response to the unit-norm weight and ``norm`` the input norm. When
    ``detach`` is set the dynamic factor is cut from the graph, so the result is linear in
    ``out`` for autograd (and for forward-mode AD, which the fused B = 2 path lacks).
    """
    if b == 1:
        return out
    if shared:  # linear replay: the factor of row 0 for every row
        factor_out, norm = out[:1].detach(), norm[:1].detach()
        if b == 2:
            return factor_out.abs() / norm * out
        return ((factor_out / norm).abs() + _COS_EPS).pow(b - 1) * out
    if b == 2 and not detach:
        if not torch.is_grad_enabled():  # sampling: the same numbers without the Function
            return out * out.abs() / norm
        return _SquareScale.apply(out, norm)
    factor_out = out.detach() if detach else out
    if detach:
        norm = norm.detach()
    if b == 2:
        factor = factor_out.abs() / norm
    else:
        factor = ((factor_out / norm).abs() + _COS_EPS).pow(b - 1)
    return factor * out


def _max_out(out: Tensor, units: int, pieces: int, dim: int, shared: bool = False) -> Tensor:
    """Max over the ``pieces`` candidates of each unit; in a linear replay the candidate
    chosen by row 0 is taken for every row (the selection is a dynamic factor)."""
    if pieces == 1:
        return out
    grouped = out.unflatten(dim, (units, pieces))
    piece_dim = dim + 1 if dim >= 0 else dim
    if not shared:
        return grouped.amax(dim=piece_dim)
    choice = grouped[:1].argmax(dim=piece_dim, keepdim=True)
    return grouped.gather(piece_dim, choice.expand_as(grouped)).select(piece_dim, 0)


def _check_b(b: float, max_out: int) -> None:
    if not b >= 1:
        raise ValueError(f"B must be >= 1, got {b}")
    if max_out < 1:
        raise ValueError(f"max_out must be >= 1, got {max_out}")


class _UnitWeight:
    """``w / ‖w‖`` per output unit, kept between calls while the weight is unchanged and no
    gradient is wanted (sampling and explanation renormalise nothing at every step)."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.value: Tensor | None = None

    def __call__(self, weight: Tensor, dims) -> Tensor:
        if torch.is_grad_enabled() and weight.requires_grad:
            return weight / torch.linalg.vector_norm(weight, dim=dims, keepdim=True)
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device, weight.shape)
        if key != self.key:
            with torch.no_grad():
                self.value = weight / torch.linalg.vector_norm(weight, dim=dims, keepdim=True)
            self.key = key
        return self.value


class BcosLinear(DetachableModule):
    """B-cos transform over the last dimension: ``(*, in_features) -> (*, out_features)``."""

    def __init__(self, in_features: int, out_features: int, b: float = 2.0, max_out: int = 1):
        super().__init__()
        _check_b(b, max_out)
        self.in_features = in_features
        self.out_features = out_features
        self.b = float(b)
        self.max_out = max_out
        self.weight = nn.Parameter(torch.empty(out_features * max_out, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self._unit = _UnitWeight()

    def unit_weight(self) -> Tensor:
        return self._unit(self.weight, 1)

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.unit_weight())
        out = _max_out(out, self.out_features, self.max_out, -1, self.shared_factors)
        if self.b == 1:
            return out
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True) + _LINEAR_NORM_EPS
        return bcos_scale(out, norm, self.b, self.detach_dynamic, self.shared_factors)

    def extra_repr(self) -> str:
        parts = [f"{self.in_features}, {self.out_features}, B={self.b:g}"]
        if self.max_out > 1:
            parts.append(f"max_out={self.max_out}")
        if self.detach_dynamic:
            parts.append("explanation_mode=True")
        return ", ".join(parts)


class BcosConv2d(DetachableModule):
    """B-cos 2-D convolution (zero padding); the cosine is taken per input patch."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 1,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        b: float = 2.0,
        max_out: int = 1,
    ):
        super().__init__()
        _check_b(b, max_out)
        if in_channels % groups or out_channels % groups:
            raise ValueError("in_channels and out_channels must be divisible by groups")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = nn.modules.utils._pair(kernel_size)
        self.stride = nn.modules.utils._pair(stride)
        self.padding = nn.modules.utils._pair(padding)
        self.dilation = nn.modules.utils._pair(dilation)
        self.groups = groups
        self.b = float(b)
        self.max_out = max_out
        self.weight = nn.Parameter(
            torch.empty(out_channels * max_out, in_channels // groups, *self.kernel_size)
        )
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self._unit = _UnitWeight()

    def unit_weight(self) -> Tensor:
        return self._unit(self.weight, (1, 2, 3))

    def patch_norm(self, x: Tensor) -> Tensor:
        """``‖patch‖`` for every output position and filter group: ``(N, G or 1, H', W')``."""
        squares = x.square()
        if self.groups == 1:
            squares = squares.sum(1, keepdim=True)
        else:
            squares = squares.unflatten(1, (self.groups, -1)).sum(2)
        if self.kernel_size == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0):
            summed = squares
        elif self.dilation == (1, 1):
            area = self.kernel_size[0] * self.kernel_size[1]
            pooled = F.avg_pool2d(squares, self.kernel_size, self.stride, self.padding)
            summed = pooled * area
        else:
            ones = squares.new_ones(self.groups, 1, *self.kernel_size)
            summed = F.conv2d(
                squares, ones, None, self.stride, self.padding, self.dilation, self.groups
            )
        norm = (summed + _CONV_NORM_EPS).sqrt()
        if self.groups > 1:
            norm = norm.repeat_interleave(self.out_channels // self.groups, dim=1)
        return norm

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv2d(
            x, self.unit_weight(), None, self.stride, self.padding, self.dilation, self.groups
        )
        out = _max_out(out, self.out_channels, self.max_out, 1, self.shared_factors)
        if self.b == 1:
            return out
        norm = self.patch_norm(self.factor_source(x))
        return bcos_scale(out, norm, self.b, self.detach_dynamic, self.shared_factors)

    def extra_repr(self) -> str:
        parts = [
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}",
            f"stride={self.stride}, padding={self.padding}, B={self.b:g}",
        ]
        if self.dilation != (1, 1):
            parts.append(f"dilation={self.dilation}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.max_out > 1:
            parts.append(f"max_out={self.max_out}")
        if self.detach_dynamic:
            parts.append("explanation_mode=True")
        return ", ".join(parts)
