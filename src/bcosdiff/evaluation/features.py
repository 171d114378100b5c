"""A feature extractor trained on the shapes data, for a domain Fréchet distance.

Without InceptionV3 weights no FID can be computed. For shapes images bcosdiff then reports
the Fréchet distance between the features of this small CNN, trained by the project on the
shapes generator to recognise which colour/shape combinations an image shows and how many
objects it holds. The number is labelled "shapes Fréchet distance", never "FID": it is not
comparable with FID values anywhere else.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.shapes import COLOURS, SHAPES, ShapesDataset

__all__ = ["SHAPES_FEATURES", "ShapesFeatureNet", "load_shapes_features", "train_shapes_features"]

SHAPES_FEATURES = Path(__file__).resolve().parent / "weights" / "shapes-features.safetensors"
_COMBOS = [(c, s) for c in COLOURS for s in SHAPES]


class ShapesFeatureNet(nn.Module):
    """``uint8 (N, 3, H, W) -> (N, 128)`` features (images are resized to 32×32)."""

    num_features = 128

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.conv4 = nn.Conv2d(128, 128, 3, padding=1)
        self.head = nn.Linear(128, len(_COMBOS) + 1)  # combination present; two objects

    def forward(self, images: Tensor) -> Tensor:
        x = images.float() / 255.0
        if x.shape[-2:] != (32, 32):
            x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.conv4(F.relu(self.conv3(x))))
        return x.mean(dim=(2, 3))

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self(images))


def _batch(dataset: ShapesDataset, indices: range) -> tuple[Tensor, Tensor]:
    images, targets = [], []
    for i in indices:
        sample = dataset.sample(i)
        target = torch.zeros(len(_COMBOS) + 1)
        for obj in sample.objects:
            target[_COMBOS.index((obj.colour, obj.shape))] = 1.0
        target[-1] = float(len(sample.objects) == 2)
        images.append(torch.from_numpy(sample.image).permute(2, 0, 1))
        targets.append(target)
    return torch.stack(images), torch.stack(targets)


def train_shapes_features(
    steps: int = 3000, batch: int = 64, seed: int = 1, lr: float = 2e-3
) -> ShapesFeatureNet:
    """Train the extractor on shapes images (32×32, data seed ``seed``)."""
    torch.manual_seed(seed)
    net = ShapesFeatureNet()
    dataset = ShapesDataset(size=32, seed=seed)
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    for step in range(steps):
        images, targets = _batch(dataset, range(step * batch, (step + 1) * batch))
        loss = F.binary_cross_entropy_with_logits(net.logits(images), targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return net.eval()


@torch.no_grad()
def feature_accuracy(net: ShapesFeatureNet, count: int = 500, seed: int = 99) -> float:
    """Share of held-out images whose combination set and object count are all right."""
    images, targets = _batch(ShapesDataset(size=32, seed=seed), range(count))
    predicted = (net.logits(images) > 0).float()
    return float((predicted == targets).all(dim=1).float().mean())


def load_shapes_features(path: str | Path = SHAPES_FEATURES) -> ShapesFeatureNet:
    from ..errors import ModelLoadError
    from ..modeldir import read_weights

    net = ShapesFeatureNet()
    try:
        net.load_state_dict(read_weights(Path(path)))
    except RuntimeError as exc:
        raise ModelLoadError(f"{path} does not fit the shapes feature extractor ({exc})") from None
    return net.eval()
