"""DF-CAM (Park et al. 2024): Grad-CAM on the U-Net's internal activations at one step.

At step ``k`` a scalar score of the network's prediction is backpropagated to the output
activation ``A`` of a block; with ``α_c = mean_{h,w} ∂score/∂A_c`` the block's map is
``ReLU(Σ_c α_c A_c)``, upsampled bilinearly to the image and min–max normalised. The
method's map sums the maps of every block (the down, middle and up stages of the U-Net, as
the authors' scoring sums many blocks) and is min–max normalised again. Grad-CAM itself is
captum's :class:`~captum.attr.LayerGradCam`.

The score (``CamOptions.score``):

* ``"drawn"`` (default): ``Σ |x̂0 - b|``, how far the clean image the prediction implies
  departs from the generated image's background colour ``b``, read in image channels
  (:func:`~bcosdiff.diffusion.encoding.image_signal`): what the image draws, whatever the
  model's target and encoding;
* ``"output"``: the authors' ``Σ ε̂(x_t)``, the sum of the network output (``x̂0`` for an x0
  model). Under the ``(rgb, 1 - rgb)`` encoding of the B-cos models that sum is a constant
  (``rgb + inv = 1``, and the noise's inverse half is ``-ε``), so its gradient is numerical
  residue; the signed image sum instead (``Σ x̂0`` in image channels) would score brightness,
  and its map lands on a white background. Measured on both in ``docs/results.md``.

Under classifier-free guidance the output is the guided prediction; its two branches run as
one batch (conditional rows first), and the map is read from the conditional branch's
activations (row 0), the branch that sees the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import Tensor, nn

from ..diffusion.encoding import encode_image, image_signal
from ..pictures import border_colour
from .explanation import Explanation, build_attribution
from .methods import AttributionMethod, AttributionOptions
from .run import GeneratedRun

__all__ = ["CAM_SCORES", "CamOptions", "DFCam", "unet_blocks"]

CAM_SCORES = ("drawn", "output")


def unet_blocks(unet: nn.Module) -> dict[str, nn.Module]:
    """The U-Net's stages in forward order: ``down.0 … middle.1 … up.N``."""
    blocks = {}
    for part in ("down", "middle", "up"):
        for i, block in enumerate(getattr(unet, part)):
            blocks[f"{part}.{i}"] = block
    return blocks


def _normalise(m: Tensor) -> Tensor:
    low, high = m.min(), m.max()
    return (m - low) / (high - low) if high > low else m * 0


def _background_signal(image, encoding: str) -> Tensor:
    """``(1, 3, 1, 1)``: the generated image's background colour (its border's median)
    as :func:`~bcosdiff.diffusion.encoding.image_signal` reads it."""
    colour = torch.tensor(border_colour(image) / 255.0, dtype=torch.float32)[None, :, None, None]
    return image_signal(encode_image(colour, encoding), encoding)


@dataclass(frozen=True, kw_only=True)
class CamOptions(AttributionOptions):
    """DF-CAM settings: run step ``step`` (index; default three quarters of the way), the
    ``blocks`` whose maps are summed (names from :func:`unet_blocks`; default all) and the
    ``score`` backpropagated ("drawn" or "output"; module docstring)."""

    step: int | None = None
    blocks: tuple[str, ...] | None = None
    score: str = "drawn"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.score not in CAM_SCORES:
            raise ValueError(f"unknown DF-CAM score {self.score!r}; expected one of {CAM_SCORES}")
        if self.blocks is not None:
            object.__setattr__(self, "blocks", tuple(self.blocks))


class DFCam(AttributionMethod):
    """DF-CAM saliency of one step of the run (:class:`CamOptions`)."""

    name = "dfcam"
    maps_words = False
    Options = CamOptions

    def _blocks(self, options: CamOptions) -> dict[str, nn.Module]:
        known = unet_blocks(self.pipe.unet)
        if options.blocks is None:
            return known
        unknown = [b for b in options.blocks if b not in known]
        if unknown:
            raise ValueError(f"unknown block(s) {unknown}; known: {list(known)}")
        return {name: known[name] for name in options.blocks}

    def block_maps(self, run: GeneratedRun, options: CamOptions | None = None) -> dict[str, Tensor]:
        """``{block: (H, W) map in [0, 1]}`` at the chosen step."""
        options = self.options if options is None else self.check_options(options)
        blocks = self._blocks(options)
        unet = self.pipe.unet
        state = run.states[run.step_index(options.step)]
        device = run.x_T.device

        process = self.pipe.process
        background = _background_signal(run.image_array(), process.encoding).to(device)
        time = torch.tensor([state.t], device=device)

        def summed_output(x: Tensor) -> Tensor:
            prediction = run.predict(unet, x, state.t)
            if options.score == "output":
                return prediction.sum(dim=(1, 2, 3))
            x0 = process.predicted_x0(prediction, x, time)
            drawn = image_signal(x0, process.encoding) - background
            return drawn.abs().sum(dim=(1, 2, 3))

        x_t = state.x_t.to(device).detach()
        size = x_t.shape[-2:]
        maps = {}
        with torch.enable_grad():
            for name, block in blocks.items():
                cam = LayerGradCam(summed_output, block)
                attribution = cam.attribute(x_t, relu_attributions=True)
                up = LayerAttribution.interpolate(attribution, tuple(size), "bilinear")
                maps[name] = _normalise(up[0, 0].detach()).cpu()
        return maps

    def saliency(self, run: GeneratedRun, options: CamOptions | None = None) -> Tensor:
        """``(H, W)``: the sum of the block maps, min–max normalised."""
        return _normalise(torch.stack(list(self.block_maps(run, options).values())).sum(0))

    def _attribute(self, run: GeneratedRun, options: CamOptions) -> Explanation:
        return build_attribution(
            run, self.masked, self.pipe.name, self.name, saliency=self.saliency(run, options)
        )
