"""DDIM sampling for the μ/σ process: one step function, one loop, any time-step list.

The update runs in standardised coordinates ``z = (x - μ)/σ``, where the μ/σ process is the
ordinary DDPM process (``docs/explanations.md``, "The sampling run"). With σ_t = 0 (``eta =
0``, paper eq. 13) a step from ``t`` to the next visited step ``s`` is

    ẑ0 = predicted clean sample,   ε̂ = (z_t - √ᾱ_t·ẑ0) / √(1-ᾱ_t)   (or the reverse for ε)
    z_s = √ᾱ_s·ẑ0 + √(1-ᾱ_s)·ε̂

with ``ᾱ = 1`` after the last step, so the last update returns ``ẑ0`` itself. ``eta > 0``
adds fresh noise between steps (tied to the encoding); such a run is no longer a function of
the prompt and the initial noise alone, so its explanation is incomplete.

Time steps come from a :class:`DDIMSchedule`: :meth:`DDIMSchedule.uniform` gives
``t_i = (i + 1)·⌊T/n⌋ - 1`` for ``i = n-1 … 0`` (diffusers' "trailing" spacing when ``n``
divides ``T``: the first step sees pure noise at ``t = T-1``); :meth:`DDIMSchedule.
exponential` gives the exponential early/late schedules of :mod:`.timesteps`.

diffusers' :class:`~diffusers.DDIMScheduler` supplies the ᾱ table and the uniform spacing.
Its ``step()`` cannot serve non-uniform schedules (it derives the previous step as
``t - ⌊T/n⌋``), so :meth:`DDIMSchedule.step` evaluates the same formula in the same float32
order itself; ``tests/test_diffusion.py`` checks it is bit-identical to diffusers' step on
uniform spacing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler
from torch import Tensor
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from .process import DiffusionProcess
from .timesteps import exponential_timesteps

__all__ = [
    "Callback",
    "DDIMSchedule",
    "StepState",
    "as_schedule",
    "ddim_sample",
    "ddim_timesteps",
    "make_ddim_scheduler",
]

Model = Callable[[Tensor, Tensor], Tensor]
"""``model(x_t, t) -> prediction`` (the network output for the process's target)."""


@dataclass
class StepState:
    """What a sampling callback sees at step ``index`` (0 = the noisiest step)."""

    index: int
    t: int
    x_t: Tensor  # the encoded sample entering the step
    prediction: Tensor  # the network output at (x_t, t)
    x0: Tensor  # the clean encoded sample the prediction implies (denoising progression)


Callback = Callable[[StepState], "StepState | None"]
"""Called after each model evaluation. Returning a :class:`StepState` replaces ``x_t`` and/or
``prediction`` for the update (``x0`` is informative only); returning None changes nothing."""


def _check_steps(process: DiffusionProcess, steps: int) -> None:
    if not 1 <= steps <= process.num_train_timesteps:
        raise ValueError(f"steps must be between 1 and {process.num_train_timesteps}, got {steps}")


def make_ddim_scheduler(process: DiffusionProcess, steps: int) -> DDIMScheduler:
    """diffusers' scheduler for ``steps`` uniformly spaced steps (see the module docstring)."""
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
    """The uniformly spaced time steps visited, from noisiest to cleanest."""
    return [int(t) for t in make_ddim_scheduler(process, steps).timesteps]


class DDIMSchedule:
    """The time steps of one DDIM run and the ᾱ table they index."""

    def __init__(self, process: DiffusionProcess, timesteps: Sequence[int]):
        steps = [int(t) for t in timesteps]
        if not steps:
            raise ValueError("a schedule needs at least one time step")
        if any(not 0 <= t < process.num_train_timesteps for t in steps):
            raise ValueError(f"time steps must lie in [0, {process.num_train_timesteps})")
        if any(a <= b for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError("time steps must be strictly decreasing")
        self.process = process
        self.timesteps = steps
        reference = make_ddim_scheduler(process, 1)
        self.alphas_cumprod = reference.alphas_cumprod  # float32, as diffusers builds it
        self.final_alpha_cumprod = reference.final_alpha_cumprod  # 1: the last step gives x0

    @classmethod
    def uniform(cls, process: DiffusionProcess, steps: int) -> DDIMSchedule:
        return cls(process, ddim_timesteps(process, steps))

    @classmethod
    def exponential(
        cls, process: DiffusionProcess, steps: int, stage: str = "early", shift: int = 30
    ) -> DDIMSchedule:
        """Steps clustered near ``T`` (``stage="early"``) or near 0 (``"late"``)."""
        return cls(process, exponential_timesteps(process.num_train_timesteps, steps, stage, shift))

    def __len__(self) -> int:
        return len(self.timesteps)

    def __repr__(self) -> str:
        return f"DDIMSchedule({self.timesteps})"

    def _alpha_prev(self, index: int) -> Tensor:
        if index + 1 < len(self.timesteps):
            return self.alphas_cumprod[self.timesteps[index + 1]]
        return self.final_alpha_cumprod

    def step(
        self,
        index: int,
        z: Tensor,
        prediction: Tensor,
        eta: float = 0.0,
        noise: Tensor | None = None,
    ) -> Tensor:
        """``z`` at the next visited step, from the standardised ``prediction`` (``ẑ0`` for
        the x0 target, ``v̂`` for v, ``ε̂`` otherwise) at step ``index``; ``noise`` (standard
        normal) is needed when ``eta > 0``."""
        alpha = self.alphas_cumprod[self.timesteps[index]]
        alpha_prev = self._alpha_prev(index)
        z0, eps = self.process.clean_and_noise(z, prediction, alpha)
        std = 0.0
        if eta > 0:
            if noise is None:
                raise ValueError("eta > 0 needs noise for the step")
            variance = ((1 - alpha_prev) / (1 - alpha)) * (1 - alpha / alpha_prev)
            std = eta * variance ** (0.5)
        z_prev = alpha_prev ** (0.5) * z0 + (1 - alpha_prev - std**2) ** (0.5) * eps
        return z_prev + std * noise if eta > 0 else z_prev


def as_schedule(process: DiffusionProcess, steps: int | DDIMSchedule) -> DDIMSchedule:
    """``steps`` uniformly spaced steps, or a given schedule unchanged."""
    return steps if isinstance(steps, DDIMSchedule) else DDIMSchedule.uniform(process, steps)


def ddim_sample(
    model: Model,
    process: DiffusionProcess,
    x_T: Tensor,
    steps: int | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    *,
    schedule: DDIMSchedule | None = None,
    noise: Sequence[Tensor] | None = None,
    start: int = 0,
    callback: Callback | None = None,
    mean: float | Tensor | None = None,
    checkpoint_steps: bool = False,
) -> Tensor:
    """Run DDIM from ``x_T`` (encoded space) and return the final sample ``x_0``.

    * ``steps`` uniformly spaced steps, or any ``schedule``;
    * ``start``: begin at step ``start`` of the schedule, with ``x_T`` the sample at that
      step's time (e.g. a stored ``x_t``);
    * ``eta > 0``: fresh noise per step, drawn from ``generator`` or given as ``noise`` (one
      standard-normal tensor per step of the schedule, indexed like it);
    * ``callback(StepState)`` after each model evaluation may read or replace ``x_t`` and the
      prediction (:class:`StepState`);
    * ``mean``: the process mean as a tensor, so that autodiff can treat it as an input
      (:mod:`bcosdiff.explain.trajectory`); default ``process.mean``;
    * ``checkpoint_steps``: recompute each step's activations during backward.

    Time steps are allocated on ``x_T``'s device: keep it on the model's device.
    """
    if eta < 0:
        raise ValueError("eta must be >= 0")
    if schedule is None:
        if steps is None:
            raise ValueError("give steps or a schedule")
        schedule = DDIMSchedule.uniform(process, steps)
    elif steps is not None and steps != len(schedule):
        raise ValueError(f"steps={steps} does not match the schedule's {len(schedule)} steps")
    if not 0 <= start < len(schedule):
        raise ValueError(f"start must be between 0 and {len(schedule) - 1}, got {start}")
    if eta > 0 and noise is not None and len(noise) != len(schedule):
        raise ValueError("eta > 0 needs one noise tensor per step")
    mu = process.mean if mean is None else mean
    sigma = process.std

    def one_step(z: Tensor, index: int, step_noise: Tensor | None) -> Tensor:
        t = schedule.timesteps[index]
        x_t = z * sigma + mu
        t_batch = torch.full((z.shape[0],), t, device=z.device, dtype=torch.long)
        prediction = model(x_t, t_batch)
        if callback is not None:
            x0 = process.predicted_x0(prediction, x_t, t_batch)
            state = callback(StepState(index, t, x_t, prediction, x0))
            if state is not None:
                if state.x_t is not x_t:
                    z = (state.x_t - mu) / sigma
                prediction = state.prediction
        if process.target != "unit_eps":
            prediction = (prediction - mu) / sigma  # x0 -> z0, μ+σε -> ε, μ+σv -> v
        return schedule.step(index, z, prediction, eta, step_noise)

    z = (x_T - mu) / sigma
    for index in range(start, len(schedule)):
        step_noise = None
        if eta > 0:
            if noise is not None:
                step_noise = noise[index].to(z.device)
            else:
                step_noise = process.noise(tuple(z.shape), generator).to(z.device)
        if checkpoint_steps:
            z = activation_checkpoint(one_step, z, index, step_noise, use_reentrant=False)
        else:
            z = one_step(z, index, step_noise)
    return z * sigma + mu
