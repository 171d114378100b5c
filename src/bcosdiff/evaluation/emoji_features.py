"""The emoji instrument's feature network: its layout, its training on real emoji scenes, and
its weights file (``weights/emoji-features.safetensors``, trained by
``benchmarks/train_emoji_features.py``). What the features are used for (retrieval,
regions, the emoji Fréchet distance) is :mod:`bcosdiff.evaluation.emoji`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.emoji_scenes import EmojiScenes
from ..errors import ModelLoadError
from ..modeldir import read_weights, write_weights

__all__ = [
    "EMOJI_FEATURES",
    "EmojiFeatureNet",
    "load_emoji_features",
    "save_emoji_features",
    "train_emoji_features",
]

EMOJI_FEATURES = Path(__file__).resolve().parent / "weights" / "emoji-features.safetensors"


class EmojiFeatureNet(nn.Module):
    """``uint8 (N, 3, H, W) -> (N, 256)`` features (images are resized to 32×32); ``logits``
    adds one concept-presence logit per concept."""

    num_features = 256

    def __init__(self, num_concepts: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 48, 3, padding=1)
        self.conv2 = nn.Conv2d(48, 96, 3, padding=1)
        self.conv3 = nn.Conv2d(96, 192, 3, padding=1)
        self.conv4 = nn.Conv2d(192, 256, 3, padding=1)
        self.norm1, self.norm2 = nn.BatchNorm2d(48), nn.BatchNorm2d(96)
        self.norm3, self.norm4 = nn.BatchNorm2d(192), nn.BatchNorm2d(256)
        self.head = nn.Linear(256, num_concepts)

    def forward(self, images: Tensor) -> Tensor:
        x = images.float() / 255.0
        if x.shape[-2:] != (32, 32):
            x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True)
        x = F.max_pool2d(F.relu(self.norm1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.norm2(self.conv2(x))), 2)
        x = F.max_pool2d(F.relu(self.norm3(self.conv3(x))), 2)
        x = F.relu(self.norm4(self.conv4(x)))
        return x.amax(dim=(2, 3))

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self(images))


def _batch(scenes: EmojiScenes, indices, index_of: dict[str, int]) -> tuple[Tensor, Tensor]:
    images, targets = [], torch.zeros(len(indices), len(index_of))
    for row, i in enumerate(indices):
        sample = scenes.sample(i)
        images.append(torch.from_numpy(sample.image).permute(2, 0, 1))
        for concept in sample.concepts:
            targets[row, index_of[concept.key]] = 1.0
    return torch.stack(images), targets


def train_emoji_features(
    scenes: EmojiScenes, steps: int = 4000, batch: int = 64, lr: float = 3e-3, seed: int = 1
) -> EmojiFeatureNet:
    """Train the instrument on ``scenes`` (its own data seed decides the scenes)."""
    torch.manual_seed(seed)
    index_of = {c.key: i for i, c in enumerate(scenes.concepts)}
    net = EmojiFeatureNet(len(index_of))
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    net.train()
    for step in range(steps):
        images, targets = _batch(scenes, range(step * batch, (step + 1) * batch), index_of)
        logits = net.logits(images)
        # Softmax over concepts for one-emoji scenes would suit retrieval best; the sigmoid
        # per concept also covers scenes of several emoji.
        loss = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=_POS_WEIGHT)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    net.concept_keys = [c.key for c in scenes.concepts]
    return net.eval()


_POS_WEIGHT = torch.tensor(20.0)  # few positives among hundreds of concepts per image


def save_emoji_features(net: EmojiFeatureNet, path: str | Path, note: str = "") -> None:
    keys = ",".join(net.concept_keys)
    write_weights(Path(path), net.state_dict(), {"format": "pt", "concepts": keys, "note": note})


def load_emoji_features(path: str | Path = EMOJI_FEATURES) -> EmojiFeatureNet:
    """The instrument and, as ``net.concept_keys``, the concepts it was trained on."""
    from safetensors import safe_open

    tensors = read_weights(Path(path))
    with safe_open(str(path), "pt") as handle:
        keys = (handle.metadata() or {}).get("concepts", "")
    keys = [k for k in keys.split(",") if k]
    net = EmojiFeatureNet(len(keys))
    try:
        net.load_state_dict(tensors)
    except RuntimeError as exc:
        raise ModelLoadError(f"{path} does not fit the emoji feature extractor ({exc})") from None
    net.concept_keys = keys
    return net.eval()
