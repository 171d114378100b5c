"""One generated image and everything needed to explain it: the input of every method."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..diffusion import DDIMSchedule, StepState, decode_image
from ..text import Conditioning

__all__ = ["GeneratedRun"]


@dataclass
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
        rgb = decode_image(self.sample.detach().cpu(), self.encoding)[0]
        return (rgb.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)

    def progression(self) -> Tensor:
        """``(steps, C, H, W)``: the clean sample predicted at each step, noisiest first
        (the denoising-progression view)."""
        if self.states is None:
            raise ValueError("this run has not been sampled")
        return torch.stack([s.x0[0].detach().cpu() for s in self.states])
