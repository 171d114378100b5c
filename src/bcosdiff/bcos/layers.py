"""B-cos linear and convolution layers.

The B-cos transform of an input ``x`` with weight ``w`` is::

    f(x; w) = |cos(x, w)|^(B-1) · (ŵᵀ x),     ŵ = w / ‖w‖,  cos(x, w) = ŵᵀx / ‖x‖

There is no bias. For a convolution, ``‖x‖`` is the norm of each input patch (over all
channels of the filter's group and all kernel positions). ``B = 1`` gives a plain linear map
with unit-norm weights. With MaxOut (``max_out = M > 1``) each output unit computes ``M``
candidate linear responses and keeps the largest before the scale is applied.

Both layers share one implementation of the scale (:func:`bcos_scale`); they differ only in
how the linear response and the input norm are obtained. While training with B = 2 (no
MaxOut; for the convolution one group and no dilation) each layer is instead one autograd
function with hand-written derivatives (``_LinearSquare``, ``_ConvSquare``), which computes
the same forward numbers with fewer passes over the activations backwards; for other B the
scale alone is one such function (``_PowerScale``). :func:`fused_layers` switches them off.
The numbers match the official B-cos v2 package (``bcos.modules.BcosConv2d`` /
``BcosLinear``), which the tests check, gradients included.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mode import DetachableModule

__all__ = ["BcosConv2d", "BcosLinear", "bcos_scale", "fused_layers"]

# Stabilisers of the reference implementation (B-cos v2).
_CONV_NORM_EPS = 1e-6  # added to the squared patch norm
_LINEAR_NORM_EPS = 1e-12  # added to the vector norm
_COS_EPS = 1e-6  # added to |cos| for B != 2
_TINY = 1e-30  # guards divisions by a zero input norm in hand-written derivatives


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


class _PowerScale(torch.autograd.Function):
    """``y = (|out/norm| + ε)^(B−1) · out`` (the scale for B ≠ 2) with hand-written
    derivatives; autograd through ``div``/``abs``/``add``/``pow``/``mul`` keeps several
    full-size intermediates, this keeps ``out`` only (and the small ``norm``).

    With ``a = |out|/norm``, ``f = (a + ε)^(B−1)`` and ``d = (B−1)·a·(a + ε)^(B−2)``:
    ``∂y/∂out = f + d`` and ``∂y/∂norm = −d·out/norm`` (summed over broadcast dimensions).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(out: Tensor, norm: Tensor, b: float) -> Tensor:
        return ((out / norm).abs() + _COS_EPS).pow(b - 1) * out  # the unfused numbers

    @staticmethod
    def setup_context(ctx, inputs, output: Tensor) -> None:
        out, norm, b = inputs
        ctx.b = b
        ctx.save_for_backward(out, norm)
        ctx.save_for_forward(out, norm)

    @staticmethod
    def _slopes(out: Tensor, norm: Tensor, b: float) -> tuple[Tensor, Tensor]:
        """``(f + d, d/norm)`` of the docstring."""
        a = (out / norm).abs()
        base = a + _COS_EPS
        d = base.pow(b - 2).mul_(a).mul_(b - 1)
        return base.pow_(b - 1).add_(d), d.div_(norm)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        out, norm = ctx.saved_tensors
        slope, d_over_norm = _PowerScale._slopes(out, norm, ctx.b)
        grad_out = grad_norm = None
        if ctx.needs_input_grad[1]:
            grad_norm = (grad * out * d_over_norm).sum_to_size(norm.shape).neg_()
        if ctx.needs_input_grad[0]:
            grad_out = slope.mul_(grad)
        return grad_out, grad_norm, None

    @staticmethod
    def jvp(ctx, d_out: Tensor | None, d_norm: Tensor | None, _b) -> Tensor:
        out, norm = ctx.saved_tensors
        slope, d_over_norm = _PowerScale._slopes(out, norm, ctx.b)
        tangent = torch.zeros_like(out)
        if d_out is not None:
            tangent = tangent + slope * d_out
        if d_norm is not None:
            tangent = tangent - d_over_norm * out * d_norm
        return tangent


class _LinearSquare(torch.autograd.Function):
    """A whole B = 2 linear layer while training: ``y = out·|out|/n`` with ``out = x ŵᵀ`` and
    ``n = ‖x‖ + ε``, with hand-written derivatives.

    With ``s = g·|out|/n`` and ``h = s ŵ``: ``∂L/∂ŵ = 2 sᵀx`` and
    ``∂L/∂x = 2h − (x·h) / (n‖x‖) · x``. Since ``Σ_o g_o y_o = x·h``, the norm's share of
    the gradient is read on the input side, so the backward makes two passes over the (often
    much wider) output instead of the eight of autograd through the scale and the norm.
    The forward computes the same numbers as the unfused layer. Returns ``(y, |out|)``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, unit: Tensor) -> tuple[Tensor, Tensor]:
        out = F.linear(x, unit)
        size = out.abs()
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True) + _LINEAR_NORM_EPS
        return out.mul_(size).div_(norm), size  # out·|out|/n, in the fresh response

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor, Tensor], output) -> None:
        x, unit = inputs
        y, size = output
        ctx.mark_non_differentiable(size)
        ctx.set_materialize_grads(False)  # no zero-filled gradient for |out|
        xnorm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        ctx.save_for_backward(x, unit, size, xnorm)
        ctx.save_for_forward(x, unit, size, xnorm, y)

    @staticmethod
    def backward(ctx, grad: Tensor, _size) -> tuple[Tensor | None, Tensor | None]:
        x, unit, size, xnorm = ctx.saved_tensors
        if grad is None:
            return None, None
        n = xnorm + _LINEAR_NORM_EPS
        scaled = grad * size
        scaled.div_(n)
        grad_x = grad_unit = None
        if ctx.needs_input_grad[1]:
            grad_unit = scaled.reshape(-1, scaled.shape[-1]).T @ x.reshape(-1, x.shape[-1])
            grad_unit.mul_(2.0)
        if ctx.needs_input_grad[0]:
            h = scaled @ unit
            coefficient = torch.linalg.vecdot(x, h).unsqueeze(-1)
            coefficient = coefficient / (n * xnorm).clamp_min(_TINY)
            grad_x = h.mul_(2.0).addcmul_(coefficient, x, value=-1.0)
        return grad_x, grad_unit

    @staticmethod
    def jvp(ctx, d_x: Tensor | None, d_unit: Tensor | None) -> tuple[Tensor, None]:
        x, unit, size, xnorm, y = ctx.saved_tensors
        n = xnorm + _LINEAR_NORM_EPS
        d_out = torch.zeros_like(y)
        d_norm = torch.zeros_like(n)
        if d_x is not None:
            d_out = d_out + F.linear(d_x, unit)
            d_norm = torch.linalg.vecdot(x, d_x).unsqueeze(-1) / xnorm.clamp_min(_TINY)
        if d_unit is not None:
            d_out = d_out + F.linear(x, d_unit)
        return 2.0 * size * d_out / n - y * d_norm / n, None


def _patch_sum(t: Tensor, kernel, stride, padding) -> Tensor:
    """The sum of ``t`` over every ``kernel`` patch, channel by channel (zero padding, no
    dilation): average pooling times the patch area."""
    if kernel == (1, 1) and stride == (1, 1) and padding == (0, 0):
        return t
    return F.avg_pool2d(t, kernel, stride, padding) * (kernel[0] * kernel[1])


class _ConvSquare(torch.autograd.Function):
    """A whole B = 2 convolution while training (one group, no dilation):
    ``y = out·|out|/n`` with ``out = conv(x, ŵ)`` and ``n = sqrt(Σ_patch x² + ε)``, with
    hand-written derivatives.

    With ``s = g·|out|/n``: ``∂L/∂out = 2s``, and the norm's term reaches ``x`` as
    ``2x · q`` with ``q = poolᵀ(−Σ_o g·y / (2n²))``, a single-channel map, so the backward
    makes three passes over the output and one over the input besides the convolution's
    own, instead of autograd's dozen. The forward computes the same numbers as the unfused
    layer. Returns ``(y, |out|, n)``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, unit: Tensor, stride, padding) -> tuple[Tensor, Tensor, Tensor]:
        kernel = tuple(unit.shape[-2:])
        out = F.conv2d(x, unit, None, stride, padding)
        size = out.abs()
        squares = x.square().sum(1, keepdim=True)
        norm = (_patch_sum(squares, kernel, stride, padding) + _CONV_NORM_EPS).sqrt()
        return out.mul_(size).div_(norm), size, norm  # out·|out|/n, in place

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, unit, stride, padding = inputs
        y, size, norm = output
        ctx.mark_non_differentiable(size, norm)
        ctx.set_materialize_grads(False)
        ctx.geometry = (tuple(unit.shape[-2:]), stride, padding)
        ctx.save_for_backward(x, unit, y, size, norm)
        ctx.save_for_forward(x, unit, y, size, norm)

    @staticmethod
    def backward(ctx, grad: Tensor | None, _size, _norm):
        if grad is None:
            return None, None, None, None
        x, unit, y, size, norm = ctx.saved_tensors
        kernel, stride, padding = ctx.geometry
        needs_x, needs_unit = ctx.needs_input_grad[:2]
        scaled = grad * size
        scaled.div_(norm).mul_(2.0)  # ∂L/∂out
        grad_x, grad_unit, _ = torch.ops.aten.convolution_backward(
            scaled, x, unit, None, stride, padding, (1, 1), False, (0, 0), 1,
            (needs_x, needs_unit, False),
        )  # fmt: skip
        if needs_x:
            # ∂L/∂S = −Σ_o g·y / (2n²) for the patch sum S, then the pool's transpose.
            grad_sum = (grad * y).sum(1, keepdim=True).div_(norm.square()).mul_(-0.5)
            if kernel != (1, 1) or stride != (1, 1) or padding != (0, 0):
                grad_sum = torch.ops.aten.avg_pool2d_backward(
                    grad_sum * (kernel[0] * kernel[1]), x[:, :1], kernel, stride, padding,
                    False, True, None,
                )  # fmt: skip
            grad_x.addcmul_(x, grad_sum, value=2.0)
        return grad_x, grad_unit, None, None

    @staticmethod
    def jvp(ctx, d_x, d_unit, _stride, _padding):
        x, unit, y, size, norm = ctx.saved_tensors
        kernel, stride, padding = ctx.geometry
        d_out = torch.zeros_like(y)
        d_norm = torch.zeros_like(norm)
        if d_x is not None:
            d_out = d_out + F.conv2d(d_x, unit, None, stride, padding)
            d_sum = _patch_sum(2.0 * (x * d_x).sum(1, keepdim=True), kernel, stride, padding)
            d_norm = d_sum / (2.0 * norm)
        if d_unit is not None:
            d_out = d_out + F.conv2d(x, d_unit, None, stride, padding)
        return 2.0 * size * d_out / norm - y * d_norm / norm, None, None


def bcos_scale(
    out: Tensor, norm: Tensor, b: float, detach: bool, shared: bool = False, inplace: bool = False
) -> Tensor:
    """Return ``|cos|^(B-1) · out`` with ``cos = out / norm``.

    ``out`` is the response to the unit-norm weight and ``norm`` the input norm. When
    ``detach`` is set the dynamic factor is cut from the graph, so the result is linear in
    ``out`` for autograd (and for forward-mode AD, which the fused B = 2 path lacks).
    ``inplace`` lets a linear replay without a gradient overwrite ``out`` (the layers pass
    their own fresh response).
    """
    if b == 1:
        return out
    if shared:  # linear replay: the factor of row 0 for every row
        factor_out, norm = out[:1].detach(), norm[:1].detach()
        if b == 2:
            factor = factor_out.abs() / norm
        else:
            factor = ((factor_out / norm).abs() + _COS_EPS).pow(b - 1)
        # out·factor is factor·out bit for bit; in place where nothing records ``out``.
        return out.mul_(factor) if inplace and not torch.is_grad_enabled() else factor * out
    if b == 2 and not detach:
        if not torch.is_grad_enabled():
            # Sampling: the same numbers without the Function (|out|·out is out·|out| bit for
            # bit), with one full-size allocation instead of three.
            return out.abs().mul_(out).div_(norm)
        return _SquareScale.apply(out, norm)
    if not detach and _fused_enabled and torch.is_grad_enabled():
        return _PowerScale.apply(out, norm, b)
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


_fused_enabled = True


@contextmanager
def fused_layers(enabled: bool = True) -> Iterator[None]:
    """Switch the fused training functions (the B = 2 :class:`BcosLinear` and
    :class:`BcosConv2d`, the scale for other B, and the scaled uncentred group norm) on or
    off, to compare against autograd through the elementary operations or to time both;
    restores the previous setting on exit. Both compute the same forward numbers; their
    gradients agree to rounding."""
    global _fused_enabled
    previous = _fused_enabled
    _fused_enabled = bool(enabled)
    try:
        yield
    finally:
        _fused_enabled = previous


def fused_training_enabled() -> bool:
    """Whether the fused training functions are switched on (see :func:`fused_layers`)."""
    return _fused_enabled


class _FusedTraining:
    """Mixin: whether a layer takes its fused B = 2 training function (one autograd node with
    hand-written derivatives) instead of autograd through its elementary operations."""

    def _fused(self) -> bool:
        return (
            _fused_enabled
            and self.b == 2
            and self.max_out == 1
            and not self.detach_dynamic
            and not self.shared_factors
            and torch.is_grad_enabled()
        )


class BcosLinear(_FusedTraining, DetachableModule):
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
        if self._fused():
            return _LinearSquare.apply(x, self.unit_weight())[0]
        out = F.linear(x, self.unit_weight())
        out = _max_out(out, self.out_features, self.max_out, -1, self.shared_factors)
        if self.b == 1:
            return out
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True) + _LINEAR_NORM_EPS
        return bcos_scale(out, norm, self.b, self.detach_dynamic, self.shared_factors, inplace=True)

    def extra_repr(self) -> str:
        parts = [f"{self.in_features}, {self.out_features}, B={self.b:g}"]
        if self.max_out > 1:
            parts.append(f"max_out={self.max_out}")
        if self.detach_dynamic:
            parts.append("explanation_mode=True")
        return ", ".join(parts)


class BcosConv2d(_FusedTraining, DetachableModule):
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
        if self.dilation == (1, 1):
            summed = _patch_sum(squares, self.kernel_size, self.stride, self.padding)
        else:
            ones = squares.new_ones(self.groups, 1, *self.kernel_size)
            summed = F.conv2d(
                squares, ones, None, self.stride, self.padding, self.dilation, self.groups
            )
        if torch.is_grad_enabled():
            norm = (summed + _CONV_NORM_EPS).sqrt()
        else:  # the same numbers in place: ``summed`` is a fresh tensor
            norm = summed.add_(_CONV_NORM_EPS).sqrt_()
        if self.groups > 1:
            norm = norm.repeat_interleave(self.out_channels // self.groups, dim=1)
        return norm

    def forward(self, x: Tensor) -> Tensor:
        if self._fused() and self.groups == 1 and self.dilation == (1, 1):
            return _ConvSquare.apply(x, self.unit_weight(), self.stride, self.padding)[0]
        out = F.conv2d(
            x, self.unit_weight(), None, self.stride, self.padding, self.dilation, self.groups
        )
        out = _max_out(out, self.out_channels, self.max_out, 1, self.shared_factors)
        if self.b == 1:
            return out
        norm = self.patch_norm(self.factor_source(x))
        return bcos_scale(out, norm, self.b, self.detach_dynamic, self.shared_factors, inplace=True)

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
