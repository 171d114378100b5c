"""Exponential time-step schedules (Park et al., "Explaining generative diffusion models via
visual analysis", 2024): a run whose steps cluster in one stage of the reverse process.

With ``T`` training steps, ``l`` sampling steps and shift ``γ``, the growth factor is
``δ = exp(ln T / (l + γ))``, so ``δ^(l+γ) = T``, and the offsets ``⌊δ^(i+1+γ)⌋``,
``i = 0 … l-1``, grow from ``⌊δ^(1+γ)⌋`` to ``T``:

* ``early`` — ``t_i = T - ⌊δ^(i+1+γ)⌋``: dense near ``T`` (where layout and semantics form),
  sparse near 0; the first step is ``T - 1`` (pure noise) and the final ``t = 0`` is dropped;
* ``late`` — ``t_i = ⌊δ^(i+1+γ)⌋`` in decreasing order: one large jump from ``T - 1`` (the
  offset ``T`` itself), then dense near 0 (where details form).

A larger ``γ`` starts the offsets higher, spreading the steps more evenly.
"""

from __future__ import annotations

import math

__all__ = ["STAGES", "exponential_timesteps"]

STAGES = ("early", "late")


def exponential_timesteps(
    num_train_timesteps: int, steps: int, stage: str = "early", shift: int = 30
) -> list[int]:
    """The ``steps`` time steps of the exponential ``stage`` schedule, noisiest first."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if shift < 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    T = num_train_timesteps
    delta = math.exp(math.log(T) / (steps + shift))
    # Rounded before the floor: δ^(l+γ) is T only up to floating-point error.
    offsets = [math.floor(round(delta ** (i + 1 + shift), 9)) for i in range(steps)]
    if stage == "early":
        timesteps = [T - 1] + [T - o for o in offsets[:-1]]
    else:
        timesteps = sorted((min(o, T - 1) for o in offsets), reverse=True)
    if any(a <= b for a, b in zip(timesteps, timesteps[1:], strict=False)):
        raise ValueError(
            f"the {stage} schedule with {steps} steps and shift {shift} repeats time steps; "
            "use a larger shift or fewer steps"
        )
    return timesteps
