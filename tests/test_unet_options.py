"""U-Net options: centred bias-free norms (against the official B-cos v2 layers, linear in
explanation mode, a complete centred U-Net) and an ordinary time embedding."""

import contextlib

import pytest
import torch
import torch.nn.functional as F
from bcos_reference import official_modules
from conftest import tiny_unet_config
from torch.func import jvp

from bcosdiff.bcos import CentredGroupNorm, CentredLayerNorm, explanation_mode, linear_replay
from bcosdiff.networks import UNet, UNetConfig


def _official_group_norm(groups, channels, weight):
    ref = official_modules().DetachableGroupNorm2d(groups, channels).double()
    with torch.no_grad():
        ref.weight.copy_(weight)
    ref.bias = None  # NoBias: the bias-free centred norm
    return ref


def test_group_norm_matches_the_official_centred_norm_without_bias():
    torch.manual_seed(0)
    norm = CentredGroupNorm(4, 8).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
    ref = _official_group_norm(4, 8, norm.weight)
    x = torch.randn(3, 8, 5, 5, dtype=torch.float64) + 2.0
    for detach in (False, True):
        ref.set_explanation_mode(detach)
        with explanation_mode(norm, detach):
            out = norm(x)
            torch.testing.assert_close(out, ref(x))
        # Centred: every group of every sample has mean 0 before the scale.
        grouped = (out / norm.weight.view(1, -1, 1, 1)).reshape(3, 4, -1)
        torch.testing.assert_close(grouped.mean(-1), torch.zeros(3, 4, dtype=torch.float64))


def test_layer_norm_matches_the_official_centred_norm_without_bias():
    torch.manual_seed(1)
    norm = CentredLayerNorm(6).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
    ref = official_modules().DetachableLayerNorm(6).double()
    with torch.no_grad():
        ref.weight.copy_(norm.weight)
    ref.bias = None
    x = torch.randn(2, 3, 6, dtype=torch.float64) + 1.0
    for detach in (False, True):
        ref.set_explanation_mode(detach)
        with explanation_mode(norm, detach):
            torch.testing.assert_close(norm(x), ref(x))


def test_explanation_mode_detaches_only_the_scale():
    """In explanation mode the norm is linear in its input (J·x = y: no additive part), and
    its Jacobian is the centring map times the detached scale: a constant-per-group input
    direction is annihilated, which an uncentred norm would pass through."""
    torch.manual_seed(2)
    for norm, x in (
        (CentredGroupNorm(2, 4).double(), torch.randn(3, 4, 3, 3, dtype=torch.float64) + 1.5),
        (CentredLayerNorm(5).double(), torch.randn(4, 5, dtype=torch.float64) + 1.5),
    ):
        with explanation_mode(norm):
            out, tangent = jvp(norm, (x,), (x,))
            torch.testing.assert_close(tangent, out)
            _, constant = jvp(norm, (x,), (torch.ones_like(x),))
            torch.testing.assert_close(constant, torch.zeros_like(x))
        # Live: degree-0 homogeneous in x around its mean, so J·(x − mean) ≈ 0.
        _, live = jvp(norm, (x,), (x,))
        assert not torch.allclose(live, out)


def test_linear_replay_shares_row_zeros_scale():
    """In a replay the rows go through row 0's map: rows that add up to row 0 give outputs
    that add up to row 0's output, and row 0's output is the ordinary forward's."""
    torch.manual_seed(3)
    norm = CentredGroupNorm(2, 4).double()
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64) + 1.0
    parts = torch.randn(3, 4, 3, 3, dtype=torch.float64)
    parts = torch.cat([parts, x - parts.sum(0, keepdim=True)])
    with linear_replay(norm):
        out = norm(torch.cat([x, parts]))
    torch.testing.assert_close(out[0], norm(x)[0])
    torch.testing.assert_close(out[1:].sum(0), out[0])


def test_sampling_and_training_paths_agree():
    torch.manual_seed(4)
    x = torch.randn(2, 8, 4, 4)
    tokens = torch.randn(2, 5, 8)
    for layer, inputs in ((CentredGroupNorm(4, 8), x), (CentredLayerNorm(8), tokens)):
        for replay in (False, True):
            with linear_replay(layer) if replay else contextlib.nullcontext():
                with torch.no_grad():
                    fast = layer(inputs)
                recorded = layer(inputs.clone().requires_grad_())
            assert torch.equal(fast, recorded.detach())


def test_a_centred_bcos_unet_is_complete_and_bias_free():
    """The whole U-Net with centred norms: in explanation mode the output is J·(inputs), where
    the inputs are the sample, the time features and the context (no bias anywhere)."""
    torch.manual_seed(5)
    config = tiny_unet_config(centred_norms=True)
    unet = UNet(config).double().eval()
    names = {type(m).__name__ for m in unet.modules()}
    assert {"CentredGroupNorm", "CentredLayerNorm"} <= names
    assert not names & {"UncentredGroupNorm", "UncentredLayerNorm"}
    sample = torch.rand(1, 6, 8, 8, dtype=torch.float64)
    context = torch.randn(1, 4, 12, dtype=torch.float64)
    t = torch.tensor([300])
    with explanation_mode(unet):
        out = unet(sample, t, context)
        temb = unet.time_features(t).double()
        _, tangent = jvp(unet.denoise, (sample, temb, context), (sample, temb, context))
    torch.testing.assert_close(tangent, out)
    assert UNetConfig.from_dict(config.to_dict()) == config


def test_an_ordinary_time_embedding_is_the_time_input():
    """With ``time_embedding: ordinary`` the time MLP has biases and sits outside the explained
    map: ``time_features`` is its output, and in explanation mode ``denoise`` is linear in
    (sample, time features, context). Other values are refused."""
    torch.manual_seed(6)
    config = tiny_unet_config(time_embedding="ordinary")
    unet = UNet(config).double().eval()
    assert unet.time_mlp is not None and any(
        "bias" in n for n, _ in unet.time_mlp.named_parameters()
    )
    t = torch.tensor([300])
    features = unet.time_features(t)
    assert features.shape == (1, 16 * config.time_embed_mult) and features.dtype == torch.float64
    sample = torch.rand(1, 6, 8, 8, dtype=torch.float64)
    context = torch.randn(1, 4, 12, dtype=torch.float64)
    with explanation_mode(unet):
        out = unet.denoise(sample, features, context)
        _, tangent = jvp(unet.denoise, (sample, features, context), (sample, features, context))
    torch.testing.assert_close(tangent, out)
    torch.testing.assert_close(out, unet(sample, t, context))
    assert UNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="time_embedding"):
        UNetConfig(time_embedding="linear")


def test_linear_shortcuts_are_b1_projections_on_the_width_changes_only():
    """``linear_shortcuts``: every residual block whose width changes projects its skip path
    with a B = 1 unit (the plain unit-norm linear map); every other B-cos layer keeps B."""
    from bcosdiff.bcos import BcosConv2d
    from bcosdiff.networks.blocks import ResBlock

    config = tiny_unet_config(linear_shortcuts=True)
    unet = UNet(config)
    shortcuts = [m.skip for m in unet.modules() if isinstance(m, ResBlock)]
    projections = [s for s in shortcuts if isinstance(s, BcosConv2d)]
    assert projections and all(s.b == 1.0 and s.kernel_size == (1, 1) for s in projections)
    others = [m for m in unet.modules() if isinstance(m, BcosConv2d) and m not in projections]
    assert others and all(m.b == 2.0 for m in others)
    for projection in projections:
        x = torch.randn(2, projection.in_channels, 4, 4)
        torch.testing.assert_close(projection(x), F.conv2d(x, projection.unit_weight()))
    assert UNetConfig.from_dict(config.to_dict()) == config


def test_a_bias_free_ordinary_unet_drops_only_the_biases():
    """``vanilla_biases: false``: the same ordinary U-Net, parameter for parameter, less every
    additive term; its norms compute torch's GroupNorm/LayerNorm with a zero shift."""
    biased = UNet(tiny_unet_config("vanilla"))
    free = UNet(tiny_unet_config("vanilla", vanilla_biases=False))
    biased_names = {name for name, _ in biased.named_parameters()}
    free_names = {name for name, _ in free.named_parameters()}
    dropped = biased_names - free_names
    assert free_names < biased_names and dropped
    assert all(name.endswith(".bias") for name in dropped)
    assert not any(name.endswith(".bias") for name in free_names)
    # What is left takes the biased network's weights by name; with the biases and shifts
    # zeroed, the two networks compute the same function.
    with torch.no_grad():
        state = biased.state_dict()
        for name in dropped:
            state[name].zero_()
        biased.load_state_dict(state)
        free.load_state_dict({k: v for k, v in state.items() if k not in dropped})
    torch.manual_seed(4)
    x = torch.randn(2, 6, 8, 8)
    t = torch.tensor([10, 700])
    context = torch.randn(2, 5, 12)
    torch.testing.assert_close(free(x, t, context), biased(x, t, context))
    config = tiny_unet_config("vanilla", vanilla_biases=False)
    assert UNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="vanilla_biases"):
        tiny_unet_config(vanilla_biases=False)


def test_full_resolution_b_sets_b_on_the_full_resolution_layers_only():
    """``full_resolution_b``: every B-cos unit whose output has the sample's resolution (and
    the first downsampling, which reads it) takes that B; every other keeps ``b``. Checked
    by the resolution each unit actually runs at, hooked during one forward pass."""
    from bcosdiff.bcos import BcosConv2d, BcosLinear
    from bcosdiff.networks.blocks import SpatialTransformer

    config = tiny_unet_config(full_resolution_b=1.0)
    unet = UNet(config)
    resolution = {}

    def record(module, inputs, _output):
        resolution[module] = inputs[0].shape[-1] if isinstance(module, BcosConv2d) else None

    units = [m for m in unet.modules() if isinstance(m, BcosConv2d | BcosLinear)]
    handles = [m.register_forward_hook(record) for m in units]
    unet(torch.randn(1, 6, 8, 8), torch.tensor([5]), torch.randn(1, 3, 12))
    for handle in handles:
        handle.remove()
    full = [m for m in units if resolution.get(m) == 8]
    coarse_convs = [m for m in units if isinstance(m, BcosConv2d) and resolution.get(m) == 4]
    assert full and coarse_convs
    assert all(m.b == 1.0 for m in full)
    assert all(m.b == 2.0 for m in coarse_convs)
    # Besides those, only the time projections of the full-resolution residual blocks take
    # B = 1; the attention units (at the coarser level here) and the time MLP keep B = 2.
    extra = [m for m in units if m.b == 1.0 and m not in full]
    assert extra and all(isinstance(m, BcosLinear) and m.out_features == 16 for m in extra)
    attention = [
        m for t in unet.modules() if isinstance(t, SpatialTransformer) for m in t.modules()
    ]
    assert all(m.b == 2.0 for m in attention if m in units)
    assert all(m.b == 2.0 for m in unet.time_embed.modules() if m in units)
    assert UNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="full_resolution_b"):
        tiny_unet_config("vanilla", full_resolution_b=1.0)
    with pytest.raises(ValueError, match="full_resolution_b"):
        tiny_unet_config(full_resolution_b=0.5)
