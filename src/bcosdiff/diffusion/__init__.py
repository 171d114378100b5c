"""Diffusion: image encodings, the μ/σ forward process and deterministic DDIM sampling."""

from .ddim import ddim_sample, ddim_timesteps, make_ddim_scheduler
from .encoding import ENCODINGS, decode_image, encode_image, encoded_channels
from .process import BETA_SCHEDULES, TARGETS, DiffusionProcess, make_betas

__all__ = [
    "BETA_SCHEDULES",
    "ENCODINGS",
    "TARGETS",
    "DiffusionProcess",
    "ddim_sample",
    "ddim_timesteps",
    "decode_image",
    "encode_image",
    "encoded_channels",
    "make_betas",
    "make_ddim_scheduler",
]
