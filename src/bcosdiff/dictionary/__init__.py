"""Dictionary learning on U-Net activations: capture, TopK sparse autoencoders, ITDA and
their shared metrics."""

from .capture import ActivationShards, ShardWriter, capture_activations, record_updates, sites
from .itda import ITDA, gradient_pursuit
from .metrics import DictionaryMetrics, dictionary_metrics
from .sae import TopKSAE, train_sae
from .steering import Steering, apply_steering, steering_vector

__all__ = [
    "ITDA",
    "ActivationShards",
    "DictionaryMetrics",
    "ShardWriter",
    "Steering",
    "TopKSAE",
    "apply_steering",
    "capture_activations",
    "dictionary_metrics",
    "gradient_pursuit",
    "record_updates",
    "sites",
    "steering_vector",
    "train_sae",
]
