"""A TopK sparse autoencoder (Gao et al. 2024) for U-Net activations.

With the input standardised per dimension, ``x̃ = (x - m) / s``::

    z = TopK_k(ReLU(W_enc (x̃ - b_dec) + b_enc))        (k non-zero codes)
    x̃̂ = Dᵀ z + b_dec                                    (rows of D have unit norm)

The loss is ``‖x̃ - x̃̂‖²`` plus the AuxK term: the residual ``e = x̃ - x̃̂`` is reconstructed from
the ``k_aux`` largest pre-activations of the *dead* features only (those that fired on no
row during the last ``dead_after`` rows), ``L_aux = ‖e - Dᵀ z_aux‖² / ‖e‖²``, weighted by
``aux_coef`` (1/32). After each backward pass the gradient component parallel to each decoder
row is removed and the rows are renormalised after the step, so the decoder stays unit-norm.

Written here rather than taken from ``overcomplete``: that package's AuxK penalises the top
half of *all* pre-activations rather than the dead features, and its install pulls in
torchvision, timm and OpenCV, which would replace the CPU torch build with another one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TopKSAE", "train_sae"]


class TopKSAE(nn.Module):
    """``TopKSAE(dim, features, k)``: :meth:`encode` gives sparse codes ``(N, features)``,
    :meth:`decode` the reconstruction in the input's own units."""

    def __init__(
        self,
        dim: int,
        features: int,
        k: int,
        aux_k: int | None = None,
        aux_coef: float = 1 / 32,
        dead_after: int = 100_000,
    ):
        super().__init__()
        if not 0 < k <= features:
            raise ValueError(f"k must be in [1, features={features}], got {k}")
        self.dim, self.features, self.k = dim, features, k
        self.aux_k = min(features, aux_k if aux_k is not None else 2 * k)
        self.aux_coef = aux_coef
        self.dead_after = dead_after
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("rows_since_fired", torch.zeros(features, dtype=torch.long))
        decoder = torch.randn(features, dim)
        self.decoder = nn.Parameter(F.normalize(decoder, dim=1))
        # The encoder starts as the decoder's transpose (Gao et al.), biases at zero.
        self.encoder = nn.Parameter(self.decoder.detach().clone())
        self.encoder_bias = nn.Parameter(torch.zeros(features))
        self.decoder_bias = nn.Parameter(torch.zeros(dim))

    @torch.no_grad()
    def fit_normalisation(self, x: Tensor) -> None:
        """Per-dimension mean and standard deviation of a sample of inputs ``(N, dim)``."""
        self.mean.copy_(x.mean(0))
        self.scale.copy_(x.std(0).clamp(min=1e-6))

    def standardise(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.scale

    def pre_codes(self, x: Tensor) -> Tensor:
        """``ReLU(W_enc (x̃ - b_dec) + b_enc)`` for inputs in their own units."""
        return F.relu(
            F.linear(self.standardise(x) - self.decoder_bias, self.encoder, self.encoder_bias)
        )

    def encode(self, x: Tensor) -> Tensor:
        """``(N, features)`` codes with at most ``k`` non-zeros per row."""
        return _top_k(self.pre_codes(x), self.k)

    def decode(self, codes: Tensor) -> Tensor:
        """The reconstruction in the input's units."""
        return self.decode_standardised(codes) * self.scale + self.mean

    def decode_standardised(self, codes: Tensor) -> Tensor:
        return codes @ self.decoder + self.decoder_bias

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def direction(self, feature: int) -> Tensor:
        """Feature ``feature``'s decoder direction in the input's units (for steering)."""
        return self.decoder[feature] * self.scale

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Training loss on a batch ``(N, dim)`` and its parts; updates the dead-feature
        counters."""
        target = self.standardise(x)
        pre = self.pre_codes(x)
        codes = _top_k(pre, self.k)
        recon = self.decode_standardised(codes)
        residual = target - recon
        mse = residual.square().sum(-1).mean()
        with torch.no_grad():
            fired = (codes > 0).any(0)
            self.rows_since_fired += x.shape[0]
            self.rows_since_fired[fired] = 0
        dead = self.rows_since_fired >= self.dead_after
        aux = torch.zeros((), device=x.device)
        if self.aux_coef > 0 and bool(dead.any()):
            dead_pre = pre.masked_fill(~dead, 0.0)
            aux_codes = _top_k(dead_pre, min(self.aux_k, int(dead.sum())))
            aux_recon = aux_codes @ self.decoder
            target_residual = residual.detach()
            aux = (target_residual - aux_recon).square().sum(-1).mean()
            aux = aux / target_residual.square().sum(-1).mean().clamp(min=1e-12)
        total = mse + self.aux_coef * aux
        parts = {
            "mse": float(mse.detach()),
            "aux": float(aux.detach()),
            "dead": float(dead.float().mean()),
        }
        return total, parts

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Project each decoder row's gradient onto the row's tangent space."""
        grad = self.decoder.grad
        if grad is not None:
            grad -= (grad * self.decoder).sum(-1, keepdim=True) * self.decoder

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.decoder.copy_(F.normalize(self.decoder, dim=1))


def _top_k(values: Tensor, k: int) -> Tensor:
    top = values.topk(k, dim=-1)
    return torch.zeros_like(values).scatter(-1, top.indices, top.values)


@dataclass
class SAETrainingLog:
    steps: int
    last_mse: float
    dead_share: float


def train_sae(
    sae: TopKSAE,
    batches: Iterable[Tensor],
    lr: float = 1e-3,
    grad_clip: float = 1.0,
) -> SAETrainingLog:
    """Adam over the given batches ``(N, dim)`` (one step each); returns the last values."""
    optimiser = torch.optim.Adam(sae.parameters(), lr=lr)
    parts = {"mse": float("nan"), "dead": 0.0}
    steps = 0
    for batch in batches:
        loss, parts = sae.loss(batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_parallel_gradient()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(sae.parameters(), grad_clip)
        optimiser.step()
        sae.normalise_decoder()
        steps += 1
    return SAETrainingLog(steps, parts["mse"], parts["dead"])
