"""Image encodings used as U-Net input and target.

``rgb_inv`` (B-cos models, paper eq. 5): ``Enc(r, g, b) = (r, g, b, 1-r, 1-g, 1-b)`` with pixel
values in ``[0, 1]``; an image is read back from 6 channels as ``(rgb + (1 - inv)) / 2``.
``rgb`` (the vanilla baseline): three channels scaled to ``[-1, 1]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ENCODINGS", "decode_image", "encode_image", "encoded_channels", "image_signal"]

ENCODINGS = ("rgb_inv", "rgb")


def encoded_channels(encoding: str) -> int:
    _check(encoding)
    return 6 if encoding == "rgb_inv" else 3


def encode_image(rgb: Tensor, encoding: str = "rgb_inv") -> Tensor:
    """``(N, 3, H, W)`` in ``[0, 1]`` -> encoded ``(N, C, H, W)``."""
    _check(encoding)
    if encoding == "rgb_inv":
        return torch.cat([rgb, 1.0 - rgb], dim=1)
    return rgb * 2.0 - 1.0


def decode_image(x: Tensor, encoding: str = "rgb_inv") -> Tensor:
    """Encoded ``(N, C, H, W)`` -> RGB in ``[0, 1]`` (clipped)."""
    _check(encoding)
    if encoding == "rgb_inv":
        rgb, inv = x[:, :3], x[:, 3:]
        return ((rgb + (1.0 - inv)) / 2.0).clamp(0.0, 1.0)
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def image_signal(x: Tensor, encoding: str = "rgb_inv") -> Tensor:
    """Encoded ``(N, C, H, W)`` -> ``(N, 3, H, W)``: the part that carries the image, read
    linearly (no offset, no clipping, so gradients pass everywhere): ``(rgb - inv) / 2`` for
    ``rgb_inv``, ``x`` for ``rgb``. Under ``rgb_inv`` the sum of all six channels is fixed by
    the encoding (``rgb + inv = 1``; and the noise's inverse half is ``-ε``), so a score that
    sums them says nothing of the image; this part's sum does."""
    _check(encoding)
    if encoding == "rgb_inv":
        return (x[:, :3] - x[:, 3:]) / 2.0
    return x


def _check(encoding: str) -> None:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown image encoding {encoding!r}; expected one of {ENCODINGS}")
