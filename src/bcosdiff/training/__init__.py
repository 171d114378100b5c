"""Training: configs, atomic resumable checkpoints and the Accelerate loop."""

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig, load_train_config
from .export import export_checkpoint
from .loop import StepInfo, build_dataset, train

__all__ = [
    "StepInfo",
    "TrainConfig",
    "build_dataset",
    "export_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "load_train_config",
    "save_checkpoint",
    "train",
]
