"""DF-RISE (Park et al. 2024): randomised input sampling at one step of the run.

At step ``k`` (input ``x_t``) ``N`` random binary masks ``M_n`` keep each pixel with
probability ``p``; masked-out pixels are set to the process mean ``μ`` (``z = 0``: the
expected value of pure noise, the counterpart of the zeroed latents of the original). Each
masked sample goes through the model and one DDIM step, and the result is compared with
the unperturbed run's stepped sample ``x_{t-1}`` by the SSIM *structure* term

    s(a, b) = (σ_ab + C3) / (σ_a σ_b + C3),   C3 = (0.03·L)² / 2,

with local statistics under a Gaussian window (15×15, σ = 1.5, as the authors use), per
pixel and averaged over channels (``2σ_ab`` in the numerator, as the authors' code has it;
Wang et al.'s structure term has ``σ_ab``). The authors' saliency is ``Σ_n M_n ⊙ s_n``,
clamped at 0 and min–max normalised (``centre=False``). Because ``s_n`` is a map, that sum
also carries how similar each pixel's neighbourhood is on average, whatever is masked, and
how often the pixel happened to be kept; by default (``centre=True``) both are taken out:

    saliency(p) = Σ_n M_n(p) s_n(p) / Σ_n M_n(p)  -  (1/N) Σ_n s_n(p),

how much more similar the output stays around ``p`` when ``p`` is kept (then clamped at 0
and min–max normalised like the original).

Comparison. The authors' code compares the masked model's *noise prediction* with the
unperturbed *stepped sample*, two different quantities. Here like is compared with like:
``compare="prediction"`` (default) the two network outputs, ``compare="stepped"`` the two
stepped samples ``x_{t-1}``. The default is the prediction because a stepped sample
contains ``x_t`` itself (``x_{t-1}`` is a mix of ``x_t`` and the prediction): masking any
pixel changes the stepped sample at that pixel whatever the model does, which adds a map of
the mixing weight to every saliency.

Masks are per pixel (``grid=None``) or coarse: a ``grid × grid`` Bernoulli grid upsampled
bilinearly to ``(grid + 1)`` cells and cropped at a random shift (RISE's smooth masks).

The structure term is written out here: torchmetrics and pytorch-msssim expose SSIM and the
merged contrast·structure term ``(2σ_ab + C2)/(σ_a² + σ_b² + C2)``, not the structure term
alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..pictures import gaussian_window
from .explanation import Explanation, build_attribution
from .methods import AttributionMethod, AttributionOptions
from .run import GeneratedRun

__all__ = [
    "COMPARISONS",
    "DFRise",
    "RiseOptions",
    "random_masks",
    "structure_similarity",
]

COMPARISONS = ("stepped", "prediction")


def structure_similarity(
    a: Tensor, b: Tensor, window: int = 15, sigma: float = 1.5, data_range: float = 1.0
) -> Tensor:
    """Per-pixel SSIM structure term of ``a`` and ``b`` ``(N, C, H, W)``, averaged over
    channels: ``(N, H, W)``. Borders are reflect-padded so the map keeps the image size."""
    c3 = (0.03 * data_range) ** 2 / 2
    channels = a.shape[1]
    kernel = gaussian_window(window, sigma).to(a)[None, None].expand(channels, 1, -1, -1)
    pad = window // 2

    def local_mean(x: Tensor) -> Tensor:
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        return F.conv2d(padded, kernel, groups=channels)

    mu_a, mu_b = local_mean(a), local_mean(b)
    var_a = (local_mean(a * a) - mu_a**2).clamp(min=0)
    var_b = (local_mean(b * b) - mu_b**2).clamp(min=0)
    cov = local_mean(a * b) - mu_a * mu_b
    return ((2 * cov + c3) / (var_a.sqrt() * var_b.sqrt() + c3)).mean(1)


def random_masks(
    count: int,
    size: int,
    keep: float,
    grid: int | None,
    generator: torch.Generator,
) -> Tensor:
    """``(count, 1, size, size)`` masks in [0, 1]: Bernoulli(keep) per pixel (``grid=None``)
    or a smooth upsampled ``grid × grid`` Bernoulli grid at a random shift."""
    if grid is None:
        return (torch.rand(count, 1, size, size, generator=generator) < keep).float()
    cell = math.ceil(size / grid)
    coarse = (torch.rand(count, 1, grid, grid, generator=generator) < keep).float()
    up = F.interpolate(
        coarse, size=((grid + 1) * cell, (grid + 1) * cell), mode="bilinear", align_corners=False
    )
    shifts = torch.randint(0, cell, (count, 2), generator=generator)
    return torch.stack(
        [up[n, :, dy : dy + size, dx : dx + size] for n, (dy, dx) in enumerate(shifts.tolist())]
    )


@dataclass(frozen=True, kw_only=True)
class RiseOptions(AttributionOptions):
    """DF-RISE settings: ``masks`` random masks keeping each pixel (or grid cell, with
    ``grid``) with probability ``keep``, at run step ``step`` (index; default three quarters
    of the way, as the authors visualise step 15 of 20), compared by ``compare``, ``batch``
    masks per U-Net call, drawn from ``seed``; ``centre`` takes out the average similarity
    and the keep counts (module docstring)."""

    masks: int = 500
    keep: float = 0.5
    grid: int | None = None
    step: int | None = None
    compare: str = "prediction"
    batch: int = 50
    seed: int = 0
    centre: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.masks < 1 or not 0 < self.keep < 1 or self.batch < 1:
            raise ValueError("need masks >= 1, 0 < keep < 1 and batch >= 1")
        if self.compare not in COMPARISONS:
            raise ValueError(f"unknown comparison {self.compare!r}; expected one of {COMPARISONS}")
        if self.grid is not None and self.grid < 1:
            raise ValueError("grid must be at least 1")


class DFRise(AttributionMethod):
    """DF-RISE saliency of one step of the run (:class:`RiseOptions`)."""

    name = "dfrise"
    maps_words = False
    Options = RiseOptions

    def saliency(self, run: GeneratedRun, options: RiseOptions | None = None) -> Tensor:
        """``(H, W)`` DF-RISE saliency in [0, 1]."""
        o = self.options if options is None else self.check_options(options)
        pipe, process = self.pipe, self.pipe.process
        index = run.step_index(o.step)
        state = run.states[index]
        device = run.x_T.device
        x_t = state.x_t.to(device)
        reference = self._compared(run, index, x_t, state.prediction.to(device), o.compare)
        size = x_t.shape[-1]
        g = torch.Generator().manual_seed(o.seed)
        total = torch.zeros(size, size, device=device)  # Σ M ⊙ s
        kept = torch.zeros(size, size, device=device)  # Σ M
        similar = torch.zeros(size, size, device=device)  # Σ s
        with torch.no_grad():
            for first in range(0, o.masks, o.batch):
                count = min(o.batch, o.masks - first)
                mask = random_masks(count, size, o.keep, o.grid, g).to(device)
                masked = process.mean + (x_t - process.mean) * mask
                prediction = run.predict(pipe.unet, masked, state.t)
                perturbed = self._compared(run, index, masked, prediction, o.compare)
                similarity = structure_similarity(perturbed, reference.expand_as(perturbed))
                total += (mask[:, 0] * similarity).sum(0)
                kept += mask[:, 0].sum(0)
                similar += similarity.sum(0)
        if o.centre:
            total = total / kept.clamp(min=1e-6) - similar / o.masks
        total = total.clamp(min=0)
        low, high = total.min(), total.max()
        return ((total - low) / (high - low) if high > low else total * 0).cpu()

    def _compared(
        self, run: GeneratedRun, index: int, x_t: Tensor, prediction: Tensor, compare: str
    ) -> Tensor:
        if compare == "prediction":
            return prediction
        process = self.pipe.process
        z = process.standardise(x_t)
        z_pred = process.standardised_prediction(prediction)
        return process.unstandardise(run.schedule.step(index, z, z_pred))

    def _attribute(self, run: GeneratedRun, options: RiseOptions) -> Explanation:
        return build_attribution(
            run, self.masked, self.pipe.name, self.name, saliency=self.saliency(run, options)
        )
