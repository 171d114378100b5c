"""The model variants of the paper (§4.1, App. C–E) as U-Net, process and text presets.

| name           | backbone | text input                          | target   | μ, σ     |
| -------------- | -------- | ----------------------------------- | -------- | -------- |
| ``bcos-x0``    | B-cos    | subword + positions, specials masked | x0       | 0.5, 0.5 |
| ``bcos-eps``   | B-cos    | same                                | μ+σε     | 0.5, 0.5 |
| ``bcos-clip-eps`` | B-cos | frozen encoder, penultimate layer   | ε        | 0.5, 0.5 |
| ``bcos-clip-x0``  | B-cos | frozen encoder, penultimate layer   | x0       | 0.5, 0.5 |
| ``vanilla``    | ordinary | frozen encoder                      | ε        | 0, 1     |
| ``bcos-v``     | B-cos    | subword + positions, specials masked | μ+σv     | 0.5, 0.5 |

``bcos-v`` is not one of the paper's variants: ``bcos-x0`` with the velocity target
(:mod:`bcosdiff.diffusion.process`), a recipe for the B-cos U-Net's low-noise error.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VARIANTS", "Variant", "get_variant"]


@dataclass(frozen=True)
class Variant:
    name: str
    unet_kind: str
    text_mode: str
    target: str
    mean: float
    std: float
    encoding: str

    def diffusion_section(self) -> dict:
        return {
            "mean": self.mean,
            "std": self.std,
            "target": self.target,
            "encoding": self.encoding,
        }


VARIANTS = {
    v.name: v
    for v in (
        Variant("bcos-x0", "bcos", "subword", "x0", 0.5, 0.5, "rgb_inv"),
        Variant("bcos-eps", "bcos", "subword", "eps", 0.5, 0.5, "rgb_inv"),
        Variant("bcos-clip-eps", "bcos", "encoder", "unit_eps", 0.5, 0.5, "rgb_inv"),
        Variant("bcos-clip-x0", "bcos", "encoder", "x0", 0.5, 0.5, "rgb_inv"),
        Variant("vanilla", "vanilla", "encoder", "unit_eps", 0.0, 1.0, "rgb"),
        Variant("bcos-v", "bcos", "subword", "v", 0.5, 0.5, "rgb_inv"),
    )
}


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(
            f"unknown variant {name!r}; expected one of {', '.join(VARIANTS)}"
        ) from None
