"""A deterministic DDIM run as an explicit function of all of its sources.

With σ_t = 0 the whole run ``x_T -> x_0`` is built from U-Net calls and affine DDIM updates.
In explanation mode the B-cos U-Net is linear in ``(x_t, time features, context)``, and every
DDIM update is linear in ``(x_t, prediction)`` plus terms in the process mean ``μ``. The final
sample is therefore exactly linear in four sources:

* the prompt embeddings (``context``) — what an explanation attributes;
* the initial noise ``x_T``;
* the time-step features of every step;
* the constant ``μ`` (entering through ``z = (x - μ)/σ`` and back).

Under classifier-free guidance (scale ``w``) each step combines a conditional and an
unconditional U-Net call with the fixed weights ``(w, 1 - w)``; both are linear in their
inputs, so the run stays linear in the same four sources. The prompt enters through the
conditional branch only; the unconditional one sees no prompt (every position masked).

:func:`run_trajectory` computes the run with each source as a tensor argument, so
Jacobian-vector products with tangent = a source give that source's contribution, and the
contributions of all four add up to the output (tested to 1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..dictionary.steering import Steering, apply_steering
from ..diffusion import (
    Callback,
    DDIMSchedule,
    DiffusionProcess,
    as_schedule,
    ddim_sample,
    guided_prediction,
)
from ..networks import UNet

__all__ = ["RunSources", "run_trajectory"]


@dataclass
class RunSources:
    """The inputs of a sampling run: one run, or several as batch rows."""

    context: Tensor  # (1, L, D)
    x_T: Tensor  # (1, C, H, W)
    time_features: Tensor  # (steps, F): one row per DDIM step
    mean: Tensor  # () the process mean μ

    def as_tuple(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.context, self.x_T, self.time_features, self.mean

    @classmethod
    def for_run(
        cls,
        unet: UNet,
        process: DiffusionProcess,
        context: Tensor,
        x_T: Tensor,
        steps: int | DDIMSchedule,
    ) -> RunSources:
        timesteps = torch.tensor(as_schedule(process, steps).timesteps, device=x_T.device)
        # A given input of the run (an ordinary time MLP's parameters are not explained).
        features = unet.time_features(timesteps).detach().to(x_T.dtype)
        return cls(
            context, x_T, features, torch.tensor(process.mean, dtype=x_T.dtype, device=x_T.device)
        )


def run_trajectory(
    unet: UNet,
    process: DiffusionProcess,
    sources: RunSources,
    *,
    steps: int | DDIMSchedule,
    context_mask: Tensor | None = None,
    checkpoint_steps: bool = False,
    eta: float = 0.0,
    step_noise: list[Tensor] | None = None,
    guidance: float = 1.0,
    steering: Steering | None = None,
    steering_rows: Tensor | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """The final encoded sample of DDIM (σ_t = 0) from the given ``sources``; ``steps`` is a
    step count (uniform spacing) or any :class:`~bcosdiff.diffusion.DDIMSchedule`.

    Several runs can share the call as batch rows: ``sources.context`` ``(R, L, D)``,
    ``x_T`` ``(R, C, H, W)``, ``time_features`` ``(steps, R, F)`` and ``mean``
    ``(R, 1, 1, 1)``
    (inside :func:`~bcosdiff.bcos.linear_replay` rows 1… are replayed through row 0's map).

    With ``eta > 0``, ``step_noise`` holds the fresh noise of every step (as
    :func:`~bcosdiff.diffusion.ddim_sample` draws it); it is an additional source that no
    explanation attributes, so such a run's explanation is incomplete.

    The run is :func:`~bcosdiff.diffusion.ddim_sample` itself, with the time features and
    ``mean`` as inputs in place of the time steps and the process mean. With
    ``checkpoint_steps`` each step's activations are recomputed during backward instead
    of stored, so a VJP through ``steps`` steps needs the memory of about one step.

    ``guidance`` is the classifier-free guidance scale; its two branches are separate U-Net
    calls (a linear replay takes each call's dynamic factors from that call's row 0).
    ``steering`` adds its vector at its site in every call, in the batch rows selected by
    ``steering_rows`` (default all): a constant, i.e. one more source of the run.
    ``callback`` is the sampler's per-step callback (e.g. for progress).
    """
    context, x_T, time_features, mean = sources.as_tuple()
    schedule = as_schedule(process, steps)
    if eta > 0 and (step_noise is None or len(step_noise) != len(schedule)):
        raise ValueError("eta > 0 needs one noise tensor per step")
    row_of = {t: i for i, t in enumerate(schedule.timesteps)}

    def model(x_t: Tensor, t: Tensor) -> Tensor:
        features = time_features[row_of[int(t[0])]]
        rows = x_t.shape[0]
        features = features if features.dim() == 2 else features[None].expand(rows, -1)
        mask = None if context_mask is None else context_mask.expand(rows, -1)
        with apply_steering(unet, steering, steering_rows):
            return guided_prediction(
                unet.denoise, x_t, features, context, mask, guidance, batched=False
            )

    return ddim_sample(
        model,
        process,
        x_T,
        eta=eta,
        schedule=schedule,
        noise=step_noise,
        mean=mean,
        checkpoint_steps=checkpoint_steps,
        callback=callback,
    )
