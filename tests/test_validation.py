"""The fixed-noise validation loss: the same noisy pictures for every variant, an exact
pixel error, and the same number however it is batched."""

from types import SimpleNamespace

import pytest
import torch

from bcosdiff.diffusion import DiffusionProcess
from bcosdiff.evaluation.validation import error_split, validation_loss
from bcosdiff.variants import get_variant


def _dataset(n=10):
    g = torch.Generator().manual_seed(3)
    return [{"image": torch.rand(3, 8, 8, generator=g), "caption": f"scene {i}"} for i in range(n)]


def _text(captions):
    return SimpleNamespace(embeddings=torch.zeros(len(captions), 4, 12), mask=None)


class _Recorder(torch.nn.Module):
    """A network that records its inputs and predicts ``value`` everywhere."""

    def __init__(self, value: float):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.value, self.inputs = value, []

    def forward(self, x_t, t, context, mask):
        self.inputs.append((x_t.clone(), t.clone()))
        return torch.full_like(x_t, self.value)


def _pipe(variant: str, value: float):
    process = DiffusionProcess.from_dict(get_variant(variant).diffusion_section())
    return SimpleNamespace(process=process, unet=_Recorder(value), text=_text)


def test_every_variant_sees_the_same_noisy_picture():
    data = _dataset()
    bcos, vanilla = _pipe("bcos-x0", 0.5), _pipe("vanilla", 0.0)
    validation_loss(bcos, data, scenes=10, levels=(100, 900), batch=4)
    validation_loss(vanilla, data, scenes=10, levels=(100, 900), batch=4)
    for (x_b, t_b), (x_v, t_v) in zip(bcos.unet.inputs, vanilla.unet.inputs, strict=True):
        assert torch.equal(t_b, t_v)
        z = bcos.process.standardise(x_b)
        torch.testing.assert_close(z[:, :3], x_v, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(z[:, 3:], -x_v, rtol=1e-5, atol=1e-5)


def test_the_error_is_the_pixel_error_of_the_predicted_picture():
    data = _dataset()
    truth = torch.stack([d["image"] for d in data])
    grey = float((truth - 0.5).square().mean())  # an x0 model that always draws grey
    loss = validation_loss(_pipe("bcos-x0", 0.5), data, scenes=10, levels=(100, 500))
    assert loss.mean == pytest.approx(grey, rel=1e-5)
    assert loss.per_level == pytest.approx({100: grey, 500: grey}, rel=1e-5)
    assert loss.scenes == 10


def test_batching_and_repetition_do_not_change_the_number():
    data = _dataset()
    first = validation_loss(_pipe("vanilla", 0.1), data, scenes=9, batch=9)
    again = validation_loss(_pipe("vanilla", 0.1), data, scenes=9, batch=2)
    assert first.mean == pytest.approx(again.mean, rel=1e-6)
    other_seed = validation_loss(_pipe("vanilla", 0.1), data, scenes=9, seed=1)
    assert other_seed.mean != pytest.approx(first.mean, rel=1e-6)


class _Identity(torch.nn.Module):
    """An x0 network that returns the noisy input read as clean (mean shift and scale
    undone): it removes none of the noise."""

    def __init__(self, process):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.process = process

    def forward(self, x_t, t, context, mask):
        root = self.process.alphas_cumprod()[t].sqrt().view(-1, 1, 1, 1)
        return (x_t - (1 - root) * self.process.mean) / root


def test_the_error_split_adds_up_and_reads_known_predictors():
    data = _dataset(8)
    grey = _pipe("bcos-x0", 0.5)
    levels = (100, 500)
    split = error_split(grey, data, scenes=8, levels=levels, batch=3)
    loss = validation_loss(grey, data, scenes=8, levels=levels)
    for part in split:
        assert part.mse == pytest.approx(loss.per_level[part.level], rel=1e-5)
        assert part.leak_part + part.low + part.high == pytest.approx(part.mse, rel=1e-9)
    identity = SimpleNamespace(process=grey.process, unet=_Identity(grey.process), text=_text)
    for part in error_split(identity, data, scenes=8, levels=levels):
        assert part.leak == pytest.approx(1.0, abs=1e-3)  # clipping to [0, 1] aside
        assert part.mse == pytest.approx(part.noise, rel=1e-6)
        assert part.low + part.high < 1e-3 * part.mse
        assert part.detail > 1.0  # the noise adds fine structure
    for part in split:
        assert part.detail == 0.0  # a flat grey picture has no detail
    with pytest.raises(ValueError, match="block 3"):
        error_split(grey, data, scenes=8, levels=levels, block=3)
