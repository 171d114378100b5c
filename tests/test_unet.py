"""U-Nets: completeness of the B-cos summary, storage round trip, learning."""

import pytest
import torch
from conftest import tiny_unet_config
from torch.func import jvp

from bcosdiff.bcos import explanation_mode
from bcosdiff.errors import ModelLoadError
from bcosdiff.modeldir import load_unet, save_unet
from bcosdiff.networks import UNet, UNetConfig


def _inputs(config: UNetConfig, batch: int = 2, tokens: int = 5, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    size = config.sample_size
    x = torch.rand(batch, config.in_channels, size, size, generator=g, dtype=dtype)
    t = torch.tensor([17, 640][:batch])
    context = torch.randn(batch, tokens, config.context_dim, generator=g, dtype=dtype)
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    mask[0, -2:] = False
    return x, t, context, mask


def _completeness_error(net: UNet, explain: bool) -> float:
    """Relative gap between the output and Σ_inputs (∂out/∂in)·in, from a VJP."""
    x, t, context, mask = _inputs(net.config)
    inputs = [x, net.time_features(t).double(), context]
    inputs = [i.clone().requires_grad_() for i in inputs]
    with explanation_mode(net, explain):
        out = net.denoise(*inputs, mask)
    # One VJP per output element would be exact but slow; a full-rank check is the JVP below.
    # Here, contract with the output itself: ⟨out, out⟩ vs Σ ⟨∂⟨out,out⟩/2∂in, in⟩.
    probe = out.detach()
    grads = torch.autograd.grad((out * probe).sum(), inputs)
    rebuilt = sum((g * i).sum() for g, i in zip(grads, inputs, strict=True))
    return abs(rebuilt.item() - (out * probe).sum().item()) / (out * probe).sum().item()


def test_bcos_unet_is_complete_in_explanation_mode():
    net = UNet(tiny_unet_config()).double()
    assert _completeness_error(net, explain=True) < 1e-4
    # Full-output check: J·x with tangent = inputs reproduces every output element.
    x, t, context, mask = _inputs(net.config)
    features = net.time_features(t).double()
    with explanation_mode(net):
        out, rebuilt = jvp(
            lambda a, b, c: net.denoise(a, b, c, mask),
            (x, features, context),
            (x, features, context),
        )
    rel = ((rebuilt - out).norm() / out.norm()).item()
    assert rel < 1e-4


def test_completeness_fails_without_explanation_mode():
    net = UNet(tiny_unet_config()).double()
    assert _completeness_error(net, explain=False) > 1e-2


def test_completeness_holds_in_float32_with_maxout_and_other_b():
    net = UNet(tiny_unet_config(b=1.5, max_out=2))
    x, t, context, mask = _inputs(net.config, dtype=torch.float32)
    features = net.time_features(t)
    with explanation_mode(net):
        out, rebuilt = jvp(
            lambda a, b, c: net.denoise(a, b, c, mask),
            (x, features, context),
            (x, features, context),
        )
    assert ((rebuilt - out).norm() / out.norm()).item() < 1e-4


def test_masked_context_tokens_do_not_influence_the_output():
    net = UNet(tiny_unet_config()).double()
    x, t, context, mask = _inputs(net.config)
    changed = context.clone()
    changed[0, -2:] = torch.randn(2, net.config.context_dim).double() * 10
    torch.testing.assert_close(net(x, t, context, mask), net(x, t, changed, mask))


@pytest.mark.parametrize("kind", ["bcos", "vanilla"])
def test_shapes_and_layout(kind):
    config = tiny_unet_config(kind, channel_mult=(1, 1, 2), attention_levels=(1, 2), sample_size=8)
    net = UNet(config)
    x, t, context, mask = _inputs(config, dtype=torch.float32)
    assert net(x, t, context, mask).shape == x.shape
    has_bias = any(name.endswith("bias") for name, _ in net.named_parameters())
    assert has_bias == (kind == "vanilla")


@pytest.mark.parametrize("kind", ["bcos", "vanilla"])
def test_model_directory_round_trip_is_exact(kind, tmp_path):
    net = UNet(tiny_unet_config(kind))
    save_unet(net, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "unet.safetensors"]
    loaded = load_unet(tmp_path)
    assert loaded.config == net.config
    for (name, a), (_, b) in zip(
        net.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    x, t, context, mask = _inputs(net.config, dtype=torch.float32)
    assert torch.equal(net.eval()(x, t, context, mask), loaded(x, t, context, mask))


def test_loading_rejects_corrupt_or_mismatched_weights(tmp_path):
    net = UNet(tiny_unet_config())
    save_unet(net, tmp_path)
    weights = tmp_path / "unet.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_unet(tmp_path)
    save_unet(UNet(tiny_unet_config(model_channels=8)), tmp_path / "other")
    (tmp_path / "other" / "unet.safetensors").replace(weights)
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_unet(tmp_path)
    with pytest.raises(ModelLoadError, match="not found"):
        load_unet(tmp_path / "missing")


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="kind"):
        UNetConfig(kind="resnet")
    with pytest.raises(ValueError, match="attention_levels"):
        UNetConfig(channel_mult=(1, 2), attention_levels=(3,))
    with pytest.raises(ValueError, match="sample_size"):
        UNetConfig(channel_mult=(1, 2, 2), sample_size=6)
    with pytest.raises(ValueError, match="unknown"):
        UNetConfig.from_dict({"widths": 3})


@pytest.mark.parametrize("kind", ["bcos", "vanilla"])
def test_unet_learns_a_tiny_batch(kind):
    """A few dozen AdamW steps on one batch must cut the denoising loss substantially
    (a few seconds on 2 cores; see ``pytest --durations``)."""
    torch.manual_seed(0)
    config = tiny_unet_config(kind, in_channels=6, out_channels=6)
    net = UNet(config)
    x0, _, context, mask = _inputs(config, batch=2, dtype=torch.float32)
    noisy = 0.5 + 0.7 * (x0 - 0.5) + 0.2 * torch.randn_like(x0)
    t = torch.tensor([300, 600])
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = (net(noisy, t, context, mask) - x0).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], (losses[0], losses[-1])
