"""Multi-head (self- or cross-) attention as a dynamic linear map of its values.

``Attn(X, Y) = A(X, Y) · V(Y)`` followed by an output projection, with
``A = softmax(Q(X) K(Y)ᵀ / sqrt(d))``. Query and key are plain bias-free projections; the
value and output projections are supplied by the caller (B-cos layers in a B-cos network).
In explanation mode ``A`` is computed from detached queries and keys, so it is a constant
factor and the module is linear in ``V(Y)``.

A boolean ``context_mask`` (``True`` = token may be attended) removes tokens from the
softmax; a query whose context is entirely masked receives exactly zero.

Outside explanation mode the fused SDPA kernel computes the output and never forms ``A``.
Two switches open it up without touching the B-cos semantics:

* :func:`observe_attention` hands every ``A`` (per layer, ``(B, heads, N, L)``) to a
  callback, computed beside the fused kernel so the output is unchanged (the role of
  diffusers' attention processors, which DAAM replaces);
* :func:`explicit_attention` computes the output as ``A @ V`` with ``A`` differentiable, for
  forward-mode autodiff, which the fused kernel does not support.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mode import DetachableModule

__all__ = ["Attention", "explicit_attention", "observe_attention"]

AttentionObserver = Callable[[str, "Attention", Tensor], None]
"""``observer(layer name, module, probabilities (B, heads, N, L))``."""


class Attention(DetachableModule):
    def __init__(
        self,
        query_dim: int,
        heads: int,
        head_dim: int,
        value_proj: nn.Module,
        out_proj: nn.Module,
        context_dim: int | None = None,
    ):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = value_proj
        self.to_out = out_proj
        self.is_cross = context_dim is not None
        self.explicit = False  # explicit_attention: A @ V with A differentiable
        self.observer: Callable[[Tensor], None] | None = None  # set by observe_attention

    def _split(self, t: Tensor) -> Tensor:
        return t.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def attention_weights(self, q: Tensor, k: Tensor, mask: Tensor | None) -> Tensor:
        """``softmax(q kᵀ / sqrt(d))`` with masked keys removed: ``(B, heads, N, L)``."""
        logits = (q @ k.transpose(-1, -2)) * self.head_dim**-0.5
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        return logits.softmax(dim=-1)

    def forward(
        self, x: Tensor, context: Tensor | None = None, context_mask: Tensor | None = None
    ) -> Tensor:
        """``x``: ``(B, N, query_dim)``; ``context``: ``(B, L, context_dim)`` (default ``x``)."""
        context = x if context is None else context
        # Explaining, only the rows the factors come from need queries and keys (row 0 in a
        # linear replay); an observer sees every row's own probabilities.
        every_row = not self.detach_dynamic or self.observer is not None
        q = self._split(self.to_q(x if every_row else self.factor_source(x)))
        k = self._split(self.to_k(context if every_row else self.factor_source(context)))
        v = self._split(self.to_v(context))
        mask = valid = None
        if context_mask is not None:
            valid = context_mask.any(dim=-1)
            # Rows with no valid token get a harmless all-true mask and are zeroed below.
            mask = (context_mask | ~valid[:, None])[:, None, None, :]
        if self.detach_dynamic:
            weights = self.attention_weights(
                self.factor_source(q).detach(),
                self.factor_source(k).detach(),
                None if mask is None else self.factor_source(mask),
            )
            out = weights @ v
        elif self.explicit:
            out = self.attention_weights(q, k, mask) @ v
        else:
            # Fused kernel for training and plain sampling (it has no forward-mode AD rule,
            # which explanation mode needs, hence the explicit path above).
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if self.observer is not None:
            with torch.no_grad():
                self.observer(self.attention_weights(q, k, mask))
        out = out.transpose(1, 2).flatten(2)
        if valid is not None:
            out = out * valid[:, None, None].to(out.dtype)
        return self.to_out(out)

    def extra_repr(self) -> str:
        mode = ", explanation_mode=True" if self.detach_dynamic else ""
        return f"heads={self.heads}, head_dim={self.head_dim}{mode}"


@contextmanager
def observe_attention(
    model: nn.Module, observer: AttentionObserver, cross_only: bool = True
) -> Iterator[list[str]]:
    """Call ``observer(name, module, probabilities)`` on every forward pass of each attention
    layer of ``model`` (cross-attention only unless ``cross_only=False``); yields the
    observed layer names. The layers' outputs are unchanged; restores them on exit.

    Probabilities of a query whose context is entirely masked are those of the all-true
    mask the layer uses internally (its output is zeroed)."""
    layers = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, Attention) and (m.is_cross or not cross_only)
    ]
    previous = [m.observer for _, m in layers]
    try:
        for name, module in layers:
            module.observer = lambda a, name=name, module=module: observer(name, module, a)
        yield [name for name, _ in layers]
    finally:
        for (_, module), before in zip(layers, previous, strict=True):
            module.observer = before


@contextmanager
def explicit_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Compute every attention layer of ``model`` as ``softmax(QKᵀ/√d) @ V`` with autodiff
    through all factors (forward mode included); restores the previous state on exit."""
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    previous = [m.explicit for m in layers]
    try:
        for module in layers:
            module.explicit = True
        yield model
    finally:
        for module, before in zip(layers, previous, strict=True):
            module.explicit = before
