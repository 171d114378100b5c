"""DF-CAM (Park et al. 2024): Grad-CAM on the U-Net's internal activations at one step.

At step ``k`` the summed network output ``Σ ε̂(x_t)`` (or ``Σ x̂0``: whatever the model
predicts) is backpropagated to the output activation ``A`` of a block; with
``α_c = mean_{h,w} ∂Σ/∂A_c`` the block's map is ``ReLU(Σ_c α_c A_c)``, upsampled bilinearly
to the image and min–max normalised. The method's map sums the maps of every block (the
down, middle and up stages of the U-Net, as the authors' scoring sums many blocks) and is
min–max normalised again. Grad-CAM itself is captum's :class:`~captum.attr.LayerGradCam`.

Under classifier-free guidance the output is the guided prediction; its two branches run as
one batch (conditional rows first), and the map is read from the conditional branch's
activations (row 0), the branch that sees the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import Tensor, nn

from .explanation import Explanation, build_attribution
from .methods import AttributionMethod, AttributionOptions
from .run import GeneratedRun

__all__ = ["CamOptions", "DFCam", "unet_blocks"]


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


@dataclass(frozen=True, kw_only=True)
class CamOptions(AttributionOptions):
    """DF-CAM settings: run step ``step`` (index; default three quarters of the way) and the
    ``blocks`` whose maps are summed (names from :func:`unet_blocks`; default all)."""

    step: int | None = None
    blocks: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
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

        def summed_output(x: Tensor) -> Tensor:
            return run.predict(unet, x, state.t).sum(dim=(1, 2, 3))

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
