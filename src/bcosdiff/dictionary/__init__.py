"""Dictionary learning on U-Net activations: capture, TopK sparse autoencoders, ITDA and
their shared metrics."""

from .capture import ActivationShards, ShardWriter, capture_activations, record_updates, sites
from .itda import ITDA, gradient_pursuit
from .metrics import DictionaryMetrics, dictionary_metrics
from .sae import TopKSAE, train_sae

__all__ = [
    "ITDA",
    "ActivationShards",
    "DictionaryMetrics",
    "ShardWriter",
    "TopKSAE",
    "capture_activations",
    "dictionary_metrics",
    "gradient_pursuit",
    "record_updates",
    "sites",
    "train_sae",
]
