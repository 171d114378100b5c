"""Networks: the U-Net layout, its layer families and model-directory storage."""

from .layers import BcosFamily, LayerFamily, VanillaFamily
from .unet import UNet, UNetConfig

__all__ = [
    "BcosFamily",
    "LayerFamily",
    "UNet",
    "UNetConfig",
    "VanillaFamily",
]
