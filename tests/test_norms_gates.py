"""Uncentred norms and gated non-linearities (and the sampling paths of all B-cos layers)."""

import contextlib

import torch
import torch.nn.functional as F
from bcos_reference import official_modules
from torch.func import jvp

from bcosdiff.bcos import (
    GEGLU,
    BcosConv2d,
    BcosLinear,
    GatedSiLU,
    UncentredGroupNorm,
    UncentredLayerNorm,
    explanation_mode,
    linear_replay,
)


def test_group_norm_matches_official_uncentred_norm():
    ref = official_modules().group_norm_uncentered
    torch.manual_seed(0)
    norm = UncentredGroupNorm(4, 8).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
    x = torch.randn(3, 8, 5, 5, dtype=torch.float64) + 2.0
    for detach in (False, True):
        with explanation_mode(norm, detach):
            torch.testing.assert_close(norm(x), ref(x, 4, norm.weight, None, 1e-5, detach))


def test_norms_do_not_centre_and_are_scale_invariant():
    torch.manual_seed(1)
    x = torch.randn(2, 6, 4, 4, dtype=torch.float64) + 3.0
    gn = UncentredGroupNorm(3, 6).double()
    # No centring: the mean survives (a centred norm would give mean 0).
    assert gn(x).mean() > 1.0
    torch.testing.assert_close(gn(5.0 * x), gn(x), rtol=1e-4, atol=1e-4)
    ln = UncentredLayerNorm(6).double()
    t = torch.randn(2, 3, 6, dtype=torch.float64)
    torch.testing.assert_close(ln(t), t / t.var(-1, unbiased=False, keepdim=True).add(1e-5).sqrt())


def test_norm_explanation_mode_detaches_statistics():
    torch.manual_seed(2)
    ln = UncentredLayerNorm(5).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    with explanation_mode(ln):
        out, tangent = jvp(ln, (x,), (x,))
    torch.testing.assert_close(tangent, out)
    _, tangent_live = jvp(ln, (x,), (x,))  # degree-0 homogeneous: J·x ≈ 0 (up to eps)
    assert tangent_live.abs().max() < 1e-3 * out.abs().max()


def test_gated_silu_equals_silu_and_is_dynamic_linear_when_explaining():
    act = GatedSiLU()
    x = torch.randn(10, dtype=torch.float64)
    torch.testing.assert_close(act(x), F.silu(x))
    with explanation_mode(act):
        out, tangent = jvp(act, (x,), (x,))
    torch.testing.assert_close(tangent, out)
    _, tangent_live = jvp(act, (x,), (x,))
    assert not torch.allclose(tangent_live, out)


def test_geglu_gate_detached_in_explanation_mode():
    torch.manual_seed(3)
    proj = torch.nn.Linear(4, 6, bias=False).double()
    geglu = GEGLU(proj)
    x = torch.randn(3, 4, dtype=torch.float64)
    a, g = proj(x).chunk(2, -1)
    torch.testing.assert_close(geglu(x), a * F.gelu(g))
    with explanation_mode(geglu):
        out, tangent = jvp(geglu, (x,), (x,))
    torch.testing.assert_close(tangent, out)


def test_the_fused_uncentred_norm_has_exact_derivatives():
    """The hand-written backward and forward-mode rules of the norm against autograd
    through the textbook formula ``x / sqrt(var + eps)``, batched JVPs included."""
    from torch.func import vmap

    from bcosdiff.bcos.norms import uncentred_normalise

    torch.manual_seed(3)
    x = torch.randn(3, 4, 7, dtype=torch.float64, requires_grad=True)

    def reference(t):
        return t / t.var(-1, unbiased=False, keepdim=True).add(1e-5).sqrt()

    def fused(t):
        return uncentred_normalise(t, 1e-5, detach=False)

    torch.testing.assert_close(fused(x), reference(x))
    assert torch.autograd.gradcheck(fused, (x,))
    tangent = torch.randn_like(x)
    torch.testing.assert_close(
        jvp(fused, (x.detach(),), (tangent,))[1], jvp(reference, (x.detach(),), (tangent,))[1]
    )
    tangents = torch.randn(5, *x.shape, dtype=torch.float64)
    batched = vmap(lambda v: jvp(fused, (x.detach(),), (v,))[1])(tangents)
    expected = torch.stack([jvp(reference, (x.detach(),), (v,))[1] for v in tangents])
    torch.testing.assert_close(batched, expected)


def test_sampling_fast_paths_give_the_numbers_of_the_training_path():
    """Without a gradient the layers take in-place, Function-free paths: bit for bit the
    same outputs as with autograd recording."""
    torch.manual_seed(0)
    x = torch.randn(2, 32, 8, 8)
    tokens = torch.randn(2, 5, 16)
    layers = [
        (BcosConv2d(32, 16, 3, padding=1), x),
        (BcosConv2d(32, 16, 1), x),
        (BcosLinear(16, 24), tokens),
        (UncentredGroupNorm(8, 32), x),
        (UncentredLayerNorm(16), tokens),
        (GEGLU(BcosLinear(16, 24)), tokens),
    ]
    for layer, inputs in layers:
        for replay in (False, True):  # ordinary forward, then the linear replay
            with linear_replay(layer) if replay else contextlib.nullcontext():
                with torch.no_grad():
                    fast = layer(inputs)
                recorded = layer(inputs.clone().requires_grad_())
            name = f"{type(layer).__name__}, replay={replay}"
            assert recorded.requires_grad, name
            assert torch.equal(fast, recorded.detach()), name


def test_the_fused_scaled_group_norm_matches_autograd():
    """The group norm's training function (norm and γ in one autograd node): the forward
    numbers of the unfused layer bit for bit in float32, and in float64 exact gradients for
    the input and γ (gradcheck), JVPs and batched JVPs equal to the unfused layer's."""
    from torch.func import vmap

    from bcosdiff.bcos import fused_layers

    torch.manual_seed(4)
    norm = UncentredGroupNorm(3, 6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
    x = torch.randn(2, 6, 5, 4) + 0.5
    outputs = []
    for fused in (True, False):
        with fused_layers(fused):
            out = norm(x.clone().requires_grad_())
        assert (type(out.grad_fn).__name__ == "_ScaledGroupNormBackward") == fused
        outputs.append(out.detach())
    assert torch.equal(outputs[0], outputs[1])

    norm = norm.double()
    x = x.double().requires_grad_()

    def fused(t, weight):
        return _call_with_weight(norm, t, weight)

    assert torch.autograd.gradcheck(fused, (x, norm.weight.detach().clone().requires_grad_()))
    tangent = torch.randn_like(x)
    tangents = torch.randn(3, *x.shape, dtype=torch.float64)
    weight = norm.weight.detach()
    weight_tangent = torch.randn_like(weight)
    results = []
    for on in (True, False):
        with fused_layers(on):
            single = jvp(norm, (x.detach(),), (tangent,))[1]
            batched = vmap(lambda v: jvp(norm, (x.detach(),), (v,))[1])(tangents)
            both = jvp(fused, (x.detach(), weight), (tangent, weight_tangent))[1]
        results.append((single, batched, both))
    for ours, reference in zip(*results, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)


def _call_with_weight(module, x, weight):
    return torch.func.functional_call(module, {"weight": weight}, (x,))
