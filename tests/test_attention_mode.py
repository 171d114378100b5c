"""Attention with key masks, and the explanation-mode context manager."""

import pytest
import torch
from torch.func import jvp

from bcosdiff.bcos import (
    Attention,
    BcosLinear,
    explanation_mode,
    is_explanation_mode,
    set_explanation_mode,
)


def _attention(dim=8, heads=2, context_dim=6):
    torch.manual_seed(0)
    inner = heads * 4
    return Attention(
        dim, heads, 4, BcosLinear(context_dim, inner), BcosLinear(inner, dim), context_dim
    ).double()


def _reference(attn, x, ctx, mask):
    q = attn._split(attn.to_q(x))
    k = attn._split(attn.to_k(ctx))
    v = attn._split(attn.to_v(ctx))
    logits = q @ k.transpose(-1, -2) / 2.0  # sqrt(head_dim = 4)
    logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
    return attn.to_out((logits.softmax(-1) @ v).transpose(1, 2).flatten(2))


def test_matches_direct_softmax_attention_in_both_modes():
    attn = _attention()
    x, ctx = torch.randn(2, 5, 8).double(), torch.randn(2, 4, 6).double()
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    expected = _reference(attn, x, ctx, mask)
    torch.testing.assert_close(attn(x, ctx, mask), expected)
    with explanation_mode(attn):
        torch.testing.assert_close(attn(x, ctx, mask), expected)


def test_masked_tokens_have_no_influence_and_empty_context_gives_zero():
    attn = _attention()
    x, ctx = torch.randn(2, 5, 8).double(), torch.randn(2, 4, 6).double()
    mask = torch.tensor([[True, False, True, False], [False, False, False, False]])
    changed = ctx.clone()
    changed[0, 1] += 100.0
    changed[0, 3] -= 50.0
    changed[1] = torch.randn(4, 6)
    torch.testing.assert_close(attn(x, ctx, mask), attn(x, changed, mask))
    assert attn(x, ctx, mask)[1].abs().max() == 0


def test_explanation_mode_makes_attention_linear_in_its_inputs():
    attn = _attention()
    x, ctx = torch.randn(1, 3, 8).double(), torch.randn(1, 4, 6).double()
    mask = torch.ones(1, 4, dtype=torch.bool)
    with explanation_mode(attn):
        out, tangent = jvp(lambda c: attn(x, c, mask), (ctx,), (ctx,))
    torch.testing.assert_close(tangent, out)


def test_context_manager_restores_previous_state_even_on_error():
    model = torch.nn.Sequential(_attention(), BcosLinear(8, 8))
    first = model[0]
    first.detach_dynamic = True  # a partially switched model
    before = [m.detach_dynamic for m in model.modules() if hasattr(m, "detach_dynamic")]
    with pytest.raises(RuntimeError), explanation_mode(model):
        assert is_explanation_mode(model)
        raise RuntimeError("boom")
    after = [m.detach_dynamic for m in model.modules() if hasattr(m, "detach_dynamic")]
    assert after == before
    with explanation_mode(model), explanation_mode(model, active=False):
        assert not any(m.detach_dynamic for m in model.modules() if hasattr(m, "detach_dynamic"))
    assert [m.detach_dynamic for m in model.modules() if hasattr(m, "detach_dynamic")] == before
    set_explanation_mode(model, True)
    assert is_explanation_mode(model)
    set_explanation_mode(model, False)
    assert not is_explanation_mode(model)


def test_linear_replay_uses_row_zero_factors_for_every_row():
    """Rows after the first go through row 0's dynamic linear map (MaxOut choice included)."""
    from torch.func import jvp as forward

    from bcosdiff.bcos import BcosConv2d, UncentredGroupNorm, linear_replay

    torch.manual_seed(1)
    net = torch.nn.Sequential(
        BcosConv2d(3, 4, 3, padding=1, max_out=2), UncentredGroupNorm(2, 4), BcosConv2d(4, 2, 1)
    ).double()
    x = torch.randn(1, 3, 5, 5).double()
    tangent = torch.randn(1, 3, 5, 5).double()
    with explanation_mode(net):
        _, expected = forward(net, (x,), (tangent,))
    with linear_replay(net):
        out = net(torch.cat([x, tangent]))
    torch.testing.assert_close(out[1:], expected)
    torch.testing.assert_close(out[:1], net(x))
    assert not any(m.shared_factors for m in net.modules() if hasattr(m, "shared_factors"))
