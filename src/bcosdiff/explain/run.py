"""One generated image and everything needed to explain it: the input of every method."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..dictionary.steering import Steering, apply_steering
from ..diffusion import DDIMSchedule, StepState, decode_image, guided_prediction
from ..pictures import to_pixels
from ..text import Conditioning

__all__ = ["GeneratedRun"]


@dataclass(kw_only=True)
class GeneratedRun:
    """A sampling run of a pipeline (batch of one), made by
    :meth:`~bcosdiff.pipeline.Pipeline.run`.

    ``sample`` and ``states`` (one :class:`~bcosdiff.diffusion.StepState` per step: ``x_t``,
    the prediction and the implied ``x0``) are None for a run prepared but not yet sampled
    (:meth:`~bcosdiff.pipeline.Pipeline.prepare_run`); the B-cos method needs only the
    inputs, since its linear replay recomputes the run.
    """

    prompt: str
    seed: int
    schedule: DDIMSchedule
    conditioning: Conditioning
    x_T: Tensor  # (1, C, H, W) on the model's device
    encoding: str
    eta: float = 0.0
    step_noise: list[Tensor] | None = None  # fresh noise per step when eta > 0
    sample: Tensor | None = None  # (1, C, H, W) the final encoded sample
    states: list[StepState] | None = None
    guidance: float = 1.0  # classifier-free guidance scale (1: none)
    steering: Steering | None = None  # a vector added at a U-Net site (bcosdiff.dictionary)

    @property
    def steps(self) -> int:
        return len(self.schedule)

    @property
    def sampled(self) -> bool:
        return self.sample is not None

    def image_array(self) -> np.ndarray:
        """``(H, W, 3)`` uint8 pixels of the generated image (rounded like the saved PNG)."""
        if self.sample is None:
            raise ValueError("this run has not been sampled")
        return to_pixels(decode_image(self.sample.detach().cpu(), self.encoding)[0])

    @property
    def image(self) -> Image.Image:
        """The generated image (PIL, the pixels of :meth:`image_array`)."""
        return Image.fromarray(self.image_array(), mode="RGB")

    def step_index(self, step: int | None = None) -> int:
        """``step`` checked against the run; None is three quarters of the way (where the
        one-step methods look, as the DF-RISE authors visualise step 15 of 20)."""
        index = (3 * self.steps) // 4 if step is None else step
        if not 0 <= index < self.steps:
            raise ValueError(f"step must be between 0 and {self.steps - 1}, got {index}")
        return index

    def context(self, rows: int = 1) -> tuple[Tensor, Tensor | None]:
        """The prompt embeddings and mask, on ``x_T``'s device, repeated for ``rows``."""
        cond, device = self.conditioning, self.x_T.device
        mask = None if cond.mask is None else cond.mask.to(device).expand(rows, -1)
        return cond.embeddings.to(device).expand(rows, -1, -1), mask

    def predict(self, unet, x_t: Tensor, t: int) -> Tensor:
        """The run's prediction (guided like the run) for each row of ``x_t`` at time ``t``:
        what the one-step methods perturb and compare."""
        rows = x_t.shape[0]
        context, mask = self.context(rows)
        time = torch.full((rows,), t, device=x_t.device, dtype=torch.long)
        with apply_steering(unet, self.steering):
            return guided_prediction(unet, x_t, time, context, mask, self.guidance)

    def progression(self) -> Tensor:
        """``(steps, C, H, W)``: the clean sample predicted at each step, noisiest first
        (the denoising-progression view)."""
        if self.states is None:
            raise ValueError("this run has not been sampled")
        return torch.stack([s.x0[0].detach().cpu() for s in self.states])
