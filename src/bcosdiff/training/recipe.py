"""Training-recipe options beyond the plain loss: loss weighting over time steps, forced
weight normalisation of B-cos layers, the learning-rate schedule, and distillation from a
trained teacher. Each is off by default; ``docs/training.md`` has what each measured.

All of them act on training only. The trained network is the same bias-free B-cos U-Net,
so explanations and their completeness are unaffected.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from ..bcos import BcosConv2d, BcosLinear
from ..diffusion import DiffusionProcess, drop_prompts
from ..errors import BcosdiffError
from ..modeldir import load_unet, read_config
from ..text import TextConfig, TextEncoder

__all__ = [
    "LOSS_WEIGHTINGS",
    "LR_SCHEDULES",
    "Teacher",
    "adaptive_clip_",
    "ema_decay_at",
    "immiscible_noise",
    "loss_weights",
    "lr_factor",
    "project_bcos_weights",
]

LOSS_WEIGHTINGS = ("uniform", "min_snr")
LR_SCHEDULES = ("constant", "cosine")

# The row norm of kaiming_uniform_(a=√5), PyTorch's and the B-cos layers' initialisation:
# entries uniform in ±1/√fan_in, so E‖w‖² = fan_in · 1/(3·fan_in) = 1/3 for every fan-in.
INITIAL_ROW_NORM = 1.0 / math.sqrt(3.0)


def lr_factor(step: int, warmup: int, total: int, schedule: str, cooldown: int = 0) -> float:
    """The learning rate of ``step`` (0-based) as a share of the configured one.

    A linear warm-up over ``warmup`` steps, then either a half-cosine down to zero at
    ``total`` (``"cosine"``) or a constant rate (``"constant"``). A constant rate may end in a
    cool-down over its last ``cooldown`` steps, ``1 − √p`` with ``p`` the share of the
    cool-down done: the warm-up–stable–decay schedule. Hägele et al. 2024 ("Scaling Laws and
    Compute-Optimal Training Beyond Fixed Training Durations") found that it matches or beats
    a cosine schedule of the same length, and the 1 − √p form a linear cool-down. Its point
    here is that the length of a run can be decided while it runs: every step before the
    cool-down has the same rate whatever ``total`` turns out to be.
    """
    warm = min(1.0, (step + 1) / max(1, warmup))
    if step < warmup:
        return warm
    if schedule == "constant":
        if cooldown <= 0 or step < total - cooldown:
            return 1.0
        return 1.0 - math.sqrt(min(1.0, (step - (total - cooldown)) / cooldown))
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_decay_at(step: int, decay: float, warmup: bool) -> float:
    """The EMA decay after optimiser step ``step`` (0-based). With ``warmup`` it is
    ``min(decay, (1 + step) / (10 + step))``: the average forgets its starting weights within
    the first hundreds of steps instead of keeping ``decay^step`` of them, which for a short
    run started from converted weights (B-cosification) is most of the average."""
    return min(decay, (1 + step) / (10 + step)) if warmup else decay


def _snr(process: DiffusionProcess, t: Tensor) -> Tensor:
    abar = process.alphas_cumprod().to(t.device)
    return (abar / (1.0 - abar))[t.long()]


def loss_weights(
    process: DiffusionProcess, t: Tensor, weighting: str, gamma: float
) -> Tensor | None:
    """Per-sample weights of the squared error at time steps ``t`` (``None``: uniform).

    ``min_snr`` (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting"):
    the x0 error is weighted by ``min(SNR_t, γ)``; for the noise targets, whose error is
    ``SNR_t`` times the x0 error in standardised units, by ``min(SNR_t, γ) / SNR_t``; for v,
    whose error is ``SNR_t + 1`` times it, by ``min(SNR_t, γ) / (SNR_t + 1)``. The
    weights are divided by their mean over uniformly drawn ``t``, so the loss keeps the
    scale of the uniform one and the learning rate and gradient clipping keep their meaning.
    """
    if weighting == "uniform":
        return None
    if weighting != "min_snr":
        raise ValueError(f"unknown loss weighting {weighting!r}; expected one of {LOSS_WEIGHTINGS}")
    every = torch.arange(process.num_train_timesteps, device=t.device)

    def raw(steps: Tensor) -> Tensor:
        snr = _snr(process, steps)
        # How many times the x0 error (standardised) the target's own error is.
        error_ratio = {"x0": torch.ones_like(snr), "v": snr + 1}.get(process.target, snr)
        return snr.clamp(max=gamma) / error_ratio

    return (raw(t) / raw(every).mean()).float()


@torch.no_grad()
def project_bcos_weights(model: nn.Module, norm: float = INITIAL_ROW_NORM) -> None:
    """Rescale every B-cos unit's weight to the norm ``norm`` (forced weight normalisation,
    as in EDM2: Karras et al. 2024, "Analyzing and Improving the Training Dynamics of
    Diffusion Models").

    A B-cos layer reads only the direction ``w/‖w‖``, so this leaves the network's function
    unchanged; what it changes is the next step. Adam's steps have a size set by the learning
    rate, so while ``‖w‖`` grows the step in direction shrinks as ``1/‖w‖``; held at the
    initial norm, every layer keeps the effective learning rate it started with."""
    for module in model.modules():
        if isinstance(module, BcosConv2d | BcosLinear):
            w = module.weight
            rows = w.flatten(1).norm(dim=1).clamp_min(1e-12)
            w.mul_((norm / rows).view(-1, *([1] * (w.dim() - 1))))


@torch.no_grad()
def adaptive_clip_(parameters, factor: float, eps: float = 1e-3) -> None:
    """Adaptive gradient clipping (Brock et al. 2021, "High-Performance Large-Scale Image
    Recognition Without Normalization"; used in every B-cos v2 config with factor 0.01).

    Each unit's gradient (a row of a matrix or filter bank; a vector parameter as a whole)
    is scaled down to at most ``factor · max(‖w_unit‖, eps)`` when it is longer: the step is
    bounded relative to the weight it changes, not by one global norm."""
    for p in parameters:
        if p.grad is None:
            continue

        def unit_norm(x: Tensor) -> Tensor:
            if x.dim() <= 1:
                return x.norm()
            return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))

        limit = unit_norm(p).clamp_min(eps) * factor
        norm = unit_norm(p.grad)
        scale = (limit / norm.clamp_min(1e-6)).clamp(max=1.0)
        p.grad.mul_(scale)


@torch.no_grad()
def immiscible_noise(x0: Tensor, eps: Tensor, process: DiffusionProcess) -> Tensor:
    """``eps`` with its rows re-assigned to the images of ``x0`` so that the summed squared
    distance between each standardised image and its noise is smallest (Li et al. 2024,
    "Immiscible Diffusion"; scipy's linear assignment). Each noise stays a standard normal
    draw; only which image it noises changes, so that nearby noise goes to nearby images."""
    from scipy.optimize import linear_sum_assignment

    z0 = _image_part(process.standardise(x0), process.encoding).flatten(1)
    noise = _image_part(eps, process.encoding).flatten(1)
    cost = torch.cdist(z0.double().cpu(), noise.double().cpu()).square()
    _, columns = linear_sum_assignment(cost.numpy())
    return eps[torch.as_tensor(columns, device=eps.device)]


def _image_part(z: Tensor, encoding: str) -> Tensor:
    """Standardised encoded sample -> its 3-channel image part (``rgb_inv`` ties the inverse
    half to minus the first, in the data and in the noise alike)."""
    return z[:, :3] if encoding == "rgb_inv" else z


def _encoded_part(z_image: Tensor, encoding: str) -> Tensor:
    return torch.cat([z_image, -z_image], dim=1) if encoding == "rgb_inv" else z_image


class Teacher:
    """A trained model whose predicted clean image the student is pulled towards.

    The teacher may use another encoding, target and text input than the student (an
    ordinary U-Net teaching a B-cos one). Both must share the noise schedule; then a
    student's noisy sample is, in standardised units, the same noisy image for the teacher,
    and the teacher's predicted clean image maps back to the student's coordinates exactly.
    (Both encodings standardise the data into ``[-1, 1]``.)
    """

    def __init__(self, directory: str | Path, student: DiffusionProcess, device: torch.device):
        directory = Path(directory)
        config = read_config(directory)
        try:
            self.process = DiffusionProcess.from_dict(config["diffusion"])
            text_config = TextConfig.from_dict(config["text"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BcosdiffError(f"cannot use {directory} as a teacher: {exc}") from None
        schedule = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule")
        if any(getattr(self.process, k) != getattr(student, k) for k in schedule):
            raise BcosdiffError(f"teacher {directory} has another noise schedule than the run")
        self.student = student
        self.unet = load_unet(directory).to(device).eval().requires_grad_(False)
        self.text = TextEncoder(text_config).to(device)

    @torch.no_grad()
    def predicted_x0(
        self, x_t: Tensor, t: Tensor, captions: list[str], drop: torch.Generator | None, p: float
    ) -> Tensor:
        """The teacher's clean image for the student's ``x_t``, in the student's coordinates.

        ``drop`` is a generator in the state the student's prompt dropout started from, so
        the teacher sees the empty prompt on the same rows."""
        z = self.student.standardise(x_t)
        image = _image_part(z, self.student.encoding)
        teacher_x_t = self.process.unstandardise(_encoded_part(image, self.process.encoding))
        cond = self.text(captions)
        context, mask = cond.embeddings, cond.mask
        if drop is not None and p > 0:
            context, mask = drop_prompts(context, mask, p, drop)
        prediction = self.unet(teacher_x_t, t, context, mask)
        x0 = self.process.predicted_x0(prediction, teacher_x_t, t)
        # Clipped to the data's range, as a sampler clips x̂0: at high noise an ε
        # prediction's x̂0 amplifies the teacher's error by 1/√ᾱ_t.
        z0 = _image_part(self.process.standardise(x0), self.process.encoding).clamp(-1.0, 1.0)
        return self.student.unstandardise(_encoded_part(z0, self.student.encoding))
