"""What the figures, the HTML view and the viewer draw over an image: per-word overlays and
the reconstruction shown as an image."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..explain.readouts import DEFAULT_READOUT, get_readout, painted_colour

if TYPE_CHECKING:  # only for annotations
    from ..explain.explanation import Explanation

__all__ = ["UPSCALE", "map_overlays", "reconstruction_rgb", "word_overlays"]

UPSCALE = 256  # display size of the small generated images


def reconstruction_rgb(exp: Explanation) -> torch.Tensor:
    """The raw reconstruction shown like an image: R_rgb (and the mirrored R_inv), clipped."""
    recon = exp.reconstruction
    if recon.shape[0] == 6:
        return ((recon[:3] + (1 - recon[3:])) / 2).clamp(0, 1)
    return ((recon + 1) / 2).clamp(0, 1)


def word_overlays(exp: Explanation) -> tuple[np.ndarray, float]:
    """``(RGBA overlays (words, H, W, 4) in [0, 1], scale)`` of the words' heat maps.

    The colour is the colour each word paints (``col`` of its contribution, as B-cos v2
    renders explanations), black where the map is negative; the opacity is ``|map| / scale``
    with one ``scale`` for every word — the largest absolute value of any word's map — so a
    filler word's overlay is faint where a content word's is strong."""
    contributions = exp.word_contributions()
    maps = get_readout(DEFAULT_READOUT)(contributions, exp.reconstruction)
    painted = painted_colour(contributions)
    scale = float(maps.abs().max()) or 1.0
    rgb = torch.where(maps[:, None] >= 0, painted, torch.zeros_like(painted))
    alpha = (maps.abs() / scale).clamp(0, 1)
    rgba = torch.cat([rgb, alpha[:, None]], dim=1).permute(0, 2, 3, 1)
    return rgba.numpy(), scale


def map_overlays(exp: Explanation) -> tuple[np.ndarray, float]:
    """``(RGBA overlays (panels, H, W, 4), scale)`` for methods without contribution maps:
    one panel per word (or one for an image-level map), colour from the ``inferno`` map,
    opacity ``max(map, 0) / scale`` with one scale for all panels."""
    from matplotlib import colormaps

    maps = exp.saliency[None] if exp.saliency is not None else exp.word_heatmaps()
    scale = float(maps.clamp(min=0).max()) or 1.0
    level = (maps.clamp(min=0) / scale).numpy()
    rgba = colormaps["inferno"](level)
    rgba[..., 3] = 0.25 + 0.75 * level  # a faint veil of the colour map even at 0
    return rgba, scale
