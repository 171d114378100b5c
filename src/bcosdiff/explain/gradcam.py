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

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import Tensor, nn

from .explanation import Explanation, build_attribution
from .methods import AttributionMethod
from .run import GeneratedRun

__all__ = ["DFCam", "unet_blocks"]


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


class DFCam(AttributionMethod):
    """DF-CAM saliency of step ``step`` (default: three quarters of the way) over
    ``blocks`` (names from :func:`unet_blocks`; default all)."""

    name = "dfcam"

    def __init__(self, pipe, step: int | None = None, blocks: list[str] | None = None):
        super().__init__(pipe)
        known = unet_blocks(pipe.unet)
        unknown = [b for b in blocks or [] if b not in known]
        if unknown:
            raise ValueError(f"unknown block(s) {unknown}; known: {list(known)}")
        self.step = step
        self.blocks = list(known) if blocks is None else list(blocks)

    def block_maps(self, run: GeneratedRun) -> dict[str, Tensor]:
        """``{block: (H, W) map in [0, 1]}`` at the chosen step."""
        unet = self.pipe.unet
        state = run.states[run.step_index(self.step)]
        device = run.x_T.device

        def summed_output(x: Tensor) -> Tensor:
            return run.predict(unet, x, state.t).sum(dim=(1, 2, 3))

        x_t = state.x_t.to(device).detach()
        size = x_t.shape[-2:]
        maps = {}
        known = unet_blocks(unet)
        with torch.enable_grad():
            for name in self.blocks:
                cam = LayerGradCam(summed_output, known[name])
                attribution = cam.attribute(x_t, relu_attributions=True)
                up = LayerAttribution.interpolate(attribution, tuple(size), "bilinear")
                maps[name] = _normalise(up[0, 0].detach()).cpu()
        return maps

    def saliency(self, run: GeneratedRun) -> Tensor:
        """``(H, W)``: the sum of the block maps, min–max normalised."""
        return _normalise(torch.stack(list(self.block_maps(run).values())).sum(0))

    def _attribute(self, run: GeneratedRun) -> Explanation:
        return build_attribution(
            run, self.masked, self.pipe.name, self.name, saliency=self.saliency(run)
        )
