"""Diffusion: image encodings, the μ/σ forward process, DDIM sampling, its time-step
schedules and classifier-free guidance."""

from .ddim import (
    Callback,
    DDIMSchedule,
    StepState,
    as_schedule,
    ddim_sample,
    ddim_timesteps,
    make_ddim_scheduler,
)
from .encoding import ENCODINGS, decode_image, encode_image, encoded_channels, image_signal
from .guidance import check_guidance, drop_prompts, empty_conditioning, guided_prediction
from .process import BETA_SCHEDULES, TARGETS, DiffusionProcess, make_betas
from .timesteps import STAGES, exponential_timesteps

__all__ = [
    "BETA_SCHEDULES",
    "Callback",
    "DDIMSchedule",
    "ENCODINGS",
    "STAGES",
    "StepState",
    "TARGETS",
    "as_schedule",
    "DiffusionProcess",
    "check_guidance",
    "ddim_sample",
    "drop_prompts",
    "ddim_timesteps",
    "decode_image",
    "encode_image",
    "empty_conditioning",
    "encoded_channels",
    "image_signal",
    "exponential_timesteps",
    "guided_prediction",
    "make_betas",
    "make_ddim_scheduler",
]
