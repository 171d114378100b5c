"""The forward diffusion process with noise mean μ and standard deviation σ (paper App. B).

``q(x_t | x_0) = N(√ᾱ_t·x_0 + (1-√ᾱ_t)·μ, σ²(1-ᾱ_t)·I)``

In standardised coordinates ``z = (x - μ) / σ`` this is the ordinary DDPM process
``z_t = √ᾱ_t·z_0 + √(1-ᾱ_t)·ε``, so any standard scheduler can run on ``z``.

With the ``rgb_inv`` encoding the noise respects the encoding: ``ε_inv = -ε_rgb``; with
``μ = 0.5`` this keeps ``x_t + x_t,inv = 1`` at every ``t``.

Prediction targets (``target``):

* ``x0``       — the clean encoded image (B-cos x0, default);
* ``eps``      — the noise encoded like an image, ``μ + σ·ε`` (fits the 6-channel encoding);
* ``unit_eps`` — the zero-mean unit-variance noise ``ε`` (the CLIP-eps variant and vanilla);
* ``v``        — the velocity ``v = √ᾱ_t·ε - √(1-ᾱ_t)·z_0`` encoded like an image, ``μ + σ·v``
  (Salimans & Ho 2022). Its clean image is ``ẑ0 = √ᾱ_t·z_t - √(1-ᾱ_t)·v̂``: a skip from the
  input that carries nearly all of ``x_t`` at low noise, as ε does, and none at high noise,
  where the network answers for the image, as with x0. Not one of the paper's variants.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..configuration import ConfigRecord
from .encoding import encoded_channels

__all__ = ["BETA_SCHEDULES", "TARGETS", "DiffusionProcess", "make_betas"]

BETA_SCHEDULES = ("linear", "scaled_linear")
TARGETS = ("x0", "eps", "unit_eps", "v")


def make_betas(schedule: str, start: float, end: float, steps: int) -> Tensor:
    """β_t for t = 0..T-1 (float64). ``linear``: evenly spaced; ``scaled_linear``: evenly
    spaced in √β (what Stable Diffusion's own code calls "linear")."""
    if schedule == "linear":
        return torch.linspace(start, end, steps, dtype=torch.float64)
    if schedule == "scaled_linear":
        return torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2
    raise ValueError(f"unknown beta schedule {schedule!r}; expected one of {BETA_SCHEDULES}")


@dataclass(frozen=True)
class DiffusionProcess(ConfigRecord):
    config_name = "diffusion"

    mean: float = 0.5
    std: float = 0.5
    target: str = "x0"
    encoding: str = "rgb_inv"
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "linear"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; expected one of {TARGETS}")
        if self.std <= 0:
            raise ValueError("std must be positive")
        if self.num_train_timesteps < 2:
            raise ValueError("num_train_timesteps must be >= 2")
        encoded_channels(self.encoding)
        make_betas(self.beta_schedule, self.beta_start, self.beta_end, 2)

    @property
    def channels(self) -> int:
        return encoded_channels(self.encoding)

    def betas(self) -> Tensor:
        return make_betas(
            self.beta_schedule, self.beta_start, self.beta_end, self.num_train_timesteps
        )

    def alphas_cumprod(self) -> Tensor:
        """ᾱ_t for t = 0..T-1 (float64)."""
        return torch.cumprod(1.0 - self.betas(), dim=0)

    # -- coordinates ---------------------------------------------------------------------
    def standardise(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def unstandardise(self, z: Tensor) -> Tensor:
        return z * self.std + self.mean

    # -- noise ---------------------------------------------------------------------------
    def noise(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Standard normal noise in encoded space; for ``rgb_inv`` the inverse half is ``-ε``."""
        n, c, *rest = shape
        if c != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {c}")
        if self.encoding == "rgb_inv":
            eps = torch.randn((n, 3, *rest), generator=generator, device=device)
            return torch.cat([eps, -eps], dim=1)
        return torch.randn(shape, generator=generator, device=device)

    def prior_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``x_T = μ + σ·ε`` (with the encoding tie)."""
        return self.unstandardise(self.noise(shape, generator, device))

    # -- forward process -----------------------------------------------------------------
    def _abar(self, t: Tensor, like: Tensor) -> Tensor:
        abar = self.alphas_cumprod().to(device=like.device)[t.long()]
        return abar.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """``x_t = √ᾱ_t·x0 + (1-√ᾱ_t)·μ + σ·√(1-ᾱ_t)·ε``."""
        abar = self._abar(t, x0)
        return abar.sqrt() * x0 + (1 - abar.sqrt()) * self.mean + self.std * (1 - abar).sqrt() * eps

    def training_target(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """What the network is trained to output for ``x_t = q_sample(x0, t, eps)``."""
        if self.target == "x0":
            return x0
        if self.target == "eps":
            return self.mean + self.std * eps
        if self.target == "v":
            abar = self._abar(t, x0)
            v = abar.sqrt() * eps - (1 - abar).sqrt() * self.standardise(x0)
            return self.mean + self.std * v
        return eps

    # -- reading predictions -------------------------------------------------------------
    @property
    def scheduler_prediction_type(self) -> str:
        """What the standardised prediction is, in diffusers' terms."""
        return {"x0": "sample", "v": "v_prediction"}.get(self.target, "epsilon")

    def standardised_prediction(self, prediction: Tensor) -> Tensor:
        """The network output in ``z`` coordinates: ``ẑ0`` for x0, ``ε̂`` for the eps targets,
        ``v̂`` for v."""
        if self.target == "unit_eps":
            return prediction
        return self.standardise(prediction)  # x0 -> z0;  μ+σε -> ε;  μ+σv -> v

    def clean_and_noise(self, z: Tensor, prediction: Tensor, abar: Tensor) -> tuple[Tensor, Tensor]:
        """``(ẑ0, ε̂)`` implied by the standardised ``prediction`` at ``z_t = z`` with
        ``ᾱ_t = abar``, in the order of operations of diffusers' ``DDIMScheduler.step`` (so the
        DDIM step built on it is bit-identical to diffusers')."""
        beta = 1 - abar
        if self.target == "x0":
            return prediction, (z - abar ** (0.5) * prediction) / beta ** (0.5)
        if self.target == "v":
            return (
                abar ** (0.5) * z - beta ** (0.5) * prediction,
                abar ** (0.5) * prediction + beta ** (0.5) * z,
            )
        return (z - beta ** (0.5) * prediction) / abar ** (0.5), prediction

    def predicted_x0(self, prediction: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """The clean image implied by a prediction at ``(x_t, t)``."""
        if self.target == "x0":
            return prediction
        z = self.standardise(x_t)
        z0, _ = self.clean_and_noise(z, self.standardised_prediction(prediction), self._abar(t, z))
        return self.unstandardise(z0)
