"""Deterministic DDIM sampling (σ_t = 0, paper eq. 13) for the μ/σ process.

The update runs in standardised coordinates ``z = (x - μ)/σ``, where the μ/σ process is the
ordinary DDPM process, through diffusers' maintained :class:`~diffusers.DDIMScheduler`.
Time steps: ``t_i = (i + 1)·⌊T/n⌋ - 1`` for ``i = n-1 … 0``. For ``n`` dividing ``T`` this is
diffusers' "trailing" spacing (the first step sees pure noise at ``t = T-1``); it is expressed
as "leading" spacing with ``steps_offset = ⌊T/n⌋ - 1`` because diffusers' ``step()`` computes
the previous step as ``t - ⌊T/n⌋``, which is exact only for the leading rule. With
``set_alpha_to_one`` the last update returns the prediction of ``x_0`` itself.

``eta > 0`` adds fresh noise between steps (tied to the encoding); such a run is no longer a
function of the prompt and the initial noise alone, so its explanation is incomplete.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import DDIMScheduler
from torch import Tensor

from .process import DiffusionProcess

__all__ = ["ddim_sample", "ddim_timesteps", "make_ddim_scheduler"]

Model = Callable[[Tensor, Tensor], Tensor]
"""``model(x_t, t) -> prediction`` (the network output for the process's target)."""


def _check_steps(process: DiffusionProcess, steps: int) -> None:
    if not 1 <= steps <= process.num_train_timesteps:
        raise ValueError(f"steps must be between 1 and {process.num_train_timesteps}, got {steps}")


def make_ddim_scheduler(process: DiffusionProcess, steps: int) -> DDIMScheduler:
    _check_steps(process, steps)
    ratio = process.num_train_timesteps // steps
    scheduler = DDIMScheduler(
        num_train_timesteps=process.num_train_timesteps,
        trained_betas=process.betas().tolist(),
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=ratio - 1,
        timestep_spacing="leading",
        prediction_type=process.scheduler_prediction_type,
    )
    scheduler.set_timesteps(steps)
    return scheduler


def ddim_timesteps(process: DiffusionProcess, steps: int) -> list[int]:
    """The time steps visited, from noisiest to cleanest."""
    return [int(t) for t in make_ddim_scheduler(process, steps).timesteps]


def ddim_sample(
    model: Model,
    process: DiffusionProcess,
    x_T: Tensor,
    steps: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Run DDIM from ``x_T`` (encoded space) and return the final sample ``x_0``."""
    if eta < 0:
        raise ValueError("eta must be >= 0")
    scheduler = make_ddim_scheduler(process, steps)
    z = process.standardise(x_T)
    for t in scheduler.timesteps:
        t_batch = torch.full((x_T.shape[0],), int(t), device=x_T.device, dtype=torch.long)
        prediction = model(process.unstandardise(z), t_batch)
        noise = process.noise(tuple(z.shape), generator, z.device) if eta > 0 else None
        z = scheduler.step(
            process.standardised_prediction(prediction),
            int(t),
            z,
            eta=eta,
            variance_noise=noise,
        ).prev_sample
    return process.unstandardise(z)
