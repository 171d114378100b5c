"""The steps behind ``bcosdiff sae``: learn a dictionary from captured shards, measure it,
interpret it on shapes, and read a ``FEATURE:STRENGTH`` steering request."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch

from ..errors import BcosdiffError
from .capture import ActivationShards
from .interpret import FeatureReading
from .itda import ITDA
from .metrics import DictionaryMetrics, dictionary_metrics
from .sae import TopKSAE, train_sae
from .steering import Steering, steering_vector
from .store import KINDS, Neurons, StoredDictionary

__all__ = [
    "HELD_OUT_SEED",
    "Interpretation",
    "interpret_dictionary",
    "learn_dictionary",
    "parse_steer",
    "reading_summary",
    "steering_from",
    "write_feature_cards",
]

HELD_OUT_SEED = 123
"""Data seed of the shapes images a dictionary is interpreted on (training captures use
other seeds), so that interpretations of one dictionary are comparable."""


def learn_dictionary(
    shards: ActivationShards,
    kind: str,
    *,
    features: int = 256,
    k: int = 8,
    steps: int = 2000,
    batch: int = 512,
    lr: float = 1e-3,
    threshold: float = 0.3,
    seed: int = 0,
) -> tuple[StoredDictionary, DictionaryMetrics]:
    """Learn a ``kind`` dictionary on all shards but the last and measure it on the last.
    ``k`` is the SAE's TopK and ITDA's target L0; ``features`` the SAE's dictionary size
    (ITDA grows its own, up to ``features``·16 atoms); ``steps`` batches of ``batch`` rows
    train the SAE, and as many are offered to ITDA."""
    if kind not in KINDS:
        raise BcosdiffError(f"unknown dictionary kind {kind!r}; expected one of {', '.join(KINDS)}")
    torch.manual_seed(seed)
    train, held = shards.split()
    sample = torch.cat(list(islice(shards.batches(batch, True, seed, paths=train), 64)))
    dim = sample.shape[1]
    norm = float(sample.norm(dim=1).mean())
    if kind == "sae":
        model = TopKSAE(dim, features, k, dead_after=max(batch * 50, 10_000))
        model.fit_normalisation(sample)
        train_sae(model, islice(shards.stream(batch, train, seed), steps), lr=lr)
        model.eval()
    elif kind == "itda":
        model = ITDA(dim, k, threshold, max_atoms=features * 16)
        model.fit(islice(shards.stream(batch, train, seed), steps))
    else:
        model = Neurons(dim)
    site = shards.metadata.get("site", shards.folder.name)
    stored = StoredDictionary(kind, model, site, shards.metadata.get("model", ""), norm)
    with torch.no_grad():
        metrics = dictionary_metrics(
            stored.encode, stored.decode, shards.batches(batch, paths=held)
        )
    return stored, metrics


def reading_summary(readings: list[FeatureReading], features: int) -> dict:
    """Distribution of the scored features' scores for their best attribute, and which
    attributes the clearly interpreted ones (precision gain ≥ 0.5) track; ``features`` is
    the dictionary size (features not scored fired on too few positions)."""
    if not readings:
        return {"features": features, "scored": 0}

    def spread(values: list[float]) -> dict:
        values = sorted(values)
        n = len(values)
        return {
            "mean": statistics.fmean(values),
            "median": statistics.median(values),
            "quartiles": [values[n // 4], values[(3 * n) // 4]],
        }

    gains = [r.gain for r in readings]
    return {
        "features": features,
        "scored": len(readings),
        "gain": spread(gains),
        "precision": spread([r.precision for r in readings]),
        "auroc": spread([r.auroc for r in readings]),
        "share_gain_0.5": sum(g >= 0.5 for g in gains) / len(gains),
        "share_gain_0.8": sum(g >= 0.8 for g in gains) / len(gains),
        "attributes": dict(Counter(r.attribute for r in readings if r.gain >= 0.5)),
    }


def parse_steer(text: str) -> tuple[int, float]:
    """``"FEATURE:STRENGTH"`` -> ``(feature, strength)``."""
    feature, sep, strength = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(feature), float(strength)
    except ValueError:
        raise BcosdiffError(f"--steer takes FEATURE:STRENGTH, e.g. 12:4.0, got {text!r}") from None


def steering_from(stored: StoredDictionary, feature: int, strength: float) -> Steering:
    if strength != strength or abs(strength) == float("inf"):
        raise BcosdiffError(f"steering strength must be a finite number, got {strength}")
    vector = steering_vector(stored.direction(feature).float(), strength, stored.update_norm)
    return Steering(stored.site, vector)


@dataclass
class Interpretation:
    """What :func:`interpret_dictionary` measured: each scored feature's best attribute, their
    summary, and the activations the feature cards are drawn from."""

    readings: list[FeatureReading]
    summary: dict
    activations: torch.Tensor  # (rows, C) at the dictionary's site
    owners: torch.Tensor  # (rows,) image index of each row
    images: int
    seed: int

    @property
    def side(self) -> int:
        """Side of the site's square grid (rows = images × 3 time steps × side²)."""
        return int(round((self.activations.shape[0] / self.images / 3) ** 0.5))


def interpret_dictionary(
    pipe,
    stored: StoredDictionary,
    *,
    images: int = 200,
    min_rows: int = 100,
    seed: int | None = None,
) -> Interpretation:
    """Match every feature of ``stored`` to the shapes attribute it tracks best (AUROC against
    the ground-truth masks) on ``images`` held-out images of data seed ``seed`` (default
    :data:`HELD_OUT_SEED`)."""
    from .interpret import dataset_activations, interpret_features

    seed = HELD_OUT_SEED if seed is None else seed
    if images < 2:
        raise BcosdiffError("need at least 2 images")
    activations, masks, owners = dataset_activations(pipe, stored.site, images, seed=seed)
    readings = interpret_features(stored.encode, activations, masks, min_rows=min_rows)
    summary = reading_summary(readings, stored.features)
    return Interpretation(readings, summary, activations, owners, images, seed)


@torch.no_grad()
def write_feature_cards(
    interpretation: Interpretation, stored: StoredDictionary, *, out: Path, cards: int, size: int
) -> list[Path]:
    """PNG cards of the ``cards`` best-interpreted features (``feature-NNNNN.png`` in
    ``out``): each feature's most-activating images of the interpreted set (``size`` px)."""
    from ..data.shapes import ShapesDataset
    from .figures import feature_card, top_features

    dataset = ShapesDataset(size=size, seed=interpretation.seed, two_object_prob=0.5)
    written = []
    for reading in top_features(interpretation.readings, cards):
        f = reading.feature
        codes = torch.cat(
            [stored.encode(x)[:, f : f + 1] for x in interpretation.activations.split(8192)]
        )
        path = Path(out) / f"feature-{f:05d}.png"
        feature_card(path, codes, interpretation.owners, dataset, reading, interpretation.side)
        written.append(path)
    return written
