"""Diffusion: image encodings, the μ/σ forward process, DDIM sampling and its time-step
schedules."""

from .ddim import (
    DDIMSchedule,
    StepState,
    as_schedule,
    ddim_sample,
    ddim_timesteps,
    make_ddim_scheduler,
)
from .encoding import ENCODINGS, decode_image, encode_image, encoded_channels, to_pixels
from .process import BETA_SCHEDULES, TARGETS, DiffusionProcess, make_betas
from .timesteps import STAGES, exponential_timesteps

__all__ = [
    "BETA_SCHEDULES",
    "DDIMSchedule",
    "ENCODINGS",
    "STAGES",
    "StepState",
    "TARGETS",
    "as_schedule",
    "DiffusionProcess",
    "ddim_sample",
    "ddim_timesteps",
    "decode_image",
    "encode_image",
    "encoded_channels",
    "exponential_timesteps",
    "make_betas",
    "make_ddim_scheduler",
    "to_pixels",
]
