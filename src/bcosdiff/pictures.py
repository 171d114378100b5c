"""Conversions between tensors, arrays and PIL images: one home for each.

* :func:`to_pixels` — ``(3, H, W)`` tensor in ``[0, 1]`` -> ``(H, W, 3)`` uint8, rounded to
  nearest (what a PNG holds);
* :func:`to_image` — a ``(3, H, W)`` tensor or an ``(H, W, 3|4)`` array in ``[0, 1]`` -> a
  PIL image (RGB or RGBA), through :func:`to_pixels`' rounding;
* :func:`to_tensor` — a PIL image -> ``(3, H, W)`` float tensor in ``[0, 1]``;
* :func:`border_colour` and :func:`departure` — an image's background colour (read from its
  border) and each pixel's distance from it;
* :func:`gaussian_window` and :func:`gaussian_blur` — the Gaussian that SSIM, the blurred
  insertion game and the shapes checker's soft templates share.

Decoding a diffusion sample into RGB is :func:`bcosdiff.diffusion.decode_image`.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

__all__ = [
    "border_colour",
    "departure",
    "gaussian_blur",
    "gaussian_window",
    "to_image",
    "to_pixels",
    "to_tensor",
]


def to_pixels(rgb: Tensor | np.ndarray) -> np.ndarray:
    """``(3, H, W)`` tensor (or ``(H, W, C)`` array) in ``[0, 1]`` -> ``(H, W, C)`` uint8."""
    if isinstance(rgb, Tensor):
        rgb = rgb.detach().cpu().permute(1, 2, 0).numpy()
    array = np.asarray(rgb) * 255.0 + 0.5  # float32 stays float32: the rounding PNGs got
    return array.clip(0, 255).astype(np.uint8)


def to_image(rgb: Tensor | np.ndarray) -> Image.Image:
    """A PIL image of a ``(3, H, W)`` tensor or an ``(H, W, 3|4)`` array in ``[0, 1]``."""
    pixels = to_pixels(rgb)
    return Image.fromarray(pixels, mode="RGBA" if pixels.shape[-1] == 4 else "RGB")


def to_tensor(image: Image.Image) -> Tensor:
    """``(3, H, W)`` float in ``[0, 1]`` of an RGB PIL image."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    return torch.from_numpy(array).permute(2, 0, 1) / 255.0


def border_colour(image: np.ndarray) -> np.ndarray:
    """Per-channel median of the outermost ring of pixels of ``(H, W, 3)``: the background
    colour, as long as objects cover less than half of the border (a model may tint it)."""
    ring = np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])
    return np.median(ring.astype(np.float64), axis=0)


def departure(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` in ``[0, 1]``: each pixel's largest channel difference from the
    :func:`border_colour` of a uint8 image."""
    return np.abs(image.astype(np.float64) - border_colour(image)).max(-1) / 255.0


def gaussian_window(size: int = 15, sigma: float = 1.5) -> Tensor:
    """``(size, size)`` normalised Gaussian window (float32)."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def gaussian_blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    """An ``(H, W)`` array blurred by a Gaussian of ``sigma`` pixels (zero outside; the
    window spans ±3σ); ``sigma <= 0`` returns it unchanged."""
    if sigma <= 0:
        return plane
    size = 2 * int(np.ceil(3 * sigma)) + 1
    kernel = gaussian_window(size, sigma).double()[None, None]
    blurred = torch.nn.functional.conv2d(
        torch.from_numpy(np.asarray(plane, dtype=np.float64))[None, None], kernel, padding=size // 2
    )
    return blurred[0, 0].numpy()
