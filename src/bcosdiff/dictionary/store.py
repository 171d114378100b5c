"""Dictionaries on disk: one safetensors file with its configuration in the header.

``kind`` is ``sae`` (:class:`~.sae.TopKSAE`), ``itda`` (:class:`~.itda.ITDA`) or
``neurons`` (the site's raw channels, the baseline: each channel is a feature). The header
also records the model and site the dictionary was learned on and the mean norm of the
site's updates, which scales steering strengths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from ..errors import BcosdiffError
from ..modeldir import atomic_write
from .itda import ITDA
from .sae import TopKSAE

__all__ = ["KINDS", "Neurons", "StoredDictionary", "load_dictionary", "save_dictionary"]

KINDS = ("sae", "itda", "neurons")


class Neurons:
    """The identity dictionary: a site's channels as features (codes = activations)."""

    def __init__(self, dim: int):
        self.dim = dim

    @property
    def features(self) -> int:
        return self.dim

    def encode(self, x: Tensor) -> Tensor:
        return x

    def decode(self, codes: Tensor) -> Tensor:
        return codes

    def direction(self, feature: int) -> Tensor:
        return torch.nn.functional.one_hot(torch.tensor(feature), self.dim).float()


@dataclass
class StoredDictionary:
    kind: str
    model: TopKSAE | ITDA | Neurons
    site: str
    source_model: str  # the model directory's name
    update_norm: float  # mean norm of the site's update rows

    @property
    def features(self) -> int:
        return self.model.features

    def encode(self, x: Tensor) -> Tensor:
        return self.model.encode(x)

    def decode(self, codes: Tensor) -> Tensor:
        return self.model.decode(codes)

    def direction(self, feature: int) -> Tensor:
        if not 0 <= feature < self.features:
            raise BcosdiffError(f"feature must be between 0 and {self.features - 1}, got {feature}")
        return self.model.direction(feature).detach()


def save_dictionary(path: str | Path, stored: StoredDictionary) -> None:
    model = stored.model
    if stored.kind == "sae":
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        config = {
            "dim": model.dim,
            "features": model.features,
            "k": model.k,
            "aux_k": model.aux_k,
            "aux_coef": model.aux_coef,
            "dead_after": model.dead_after,
        }
    elif stored.kind == "itda":
        tensors = {"atoms": model.atoms.contiguous(), "sources": torch.tensor(model.sources)}
        config = {
            "dim": model.dim,
            "l0": model.l0,
            "threshold": model.threshold,
            "max_atoms": model.max_atoms,
        }
    elif stored.kind == "neurons":
        tensors = {"dim": torch.tensor([model.dim])}
        config = {"dim": model.dim}
    else:
        raise ValueError(f"unknown dictionary kind {stored.kind!r}")
    meta = {
        "kind": stored.kind,
        "config": json.dumps(config),
        "site": stored.site,
        "model": stored.source_model,
        "update_norm": repr(float(stored.update_norm)),
    }
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_dictionary(path: str | Path) -> StoredDictionary:
    """Read a dictionary written by :func:`save_dictionary` (safetensors only)."""
    path = Path(path)
    try:
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    except (OSError, SafetensorError) as exc:
        raise BcosdiffError(f"cannot read dictionary {path}: {exc}") from None
    try:
        kind = meta["kind"]
        config = json.loads(meta["config"])
        site, source, norm = meta["site"], meta["model"], float(meta["update_norm"])
        if kind == "sae":
            model = TopKSAE(**config)
            model.load_state_dict(tensors)
        elif kind == "itda":
            model = ITDA(**config)
            model.atoms = tensors["atoms"].float()
            model.sources = [int(s) for s in tensors["sources"]]
        elif kind == "neurons":
            model = Neurons(int(config["dim"]))
        else:
            raise ValueError(f"unknown kind {kind!r}")
    except (KeyError, ValueError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
        raise BcosdiffError(f"{path} is not a bcosdiff dictionary: {exc}") from None
    return StoredDictionary(kind, model, site, source, norm)
