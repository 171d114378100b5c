"""Explanations of whole sampling runs: completeness, consistency, agreement with sampling."""

from dataclasses import replace

import pytest
import torch
from conftest import TINY_UNET, tiny_unet_config

from bcosdiff.bcos import explanation_mode, is_explanation_mode
from bcosdiff.diffusion import DiffusionProcess, ddim_sample
from bcosdiff.explain import RunSources, explain_run, normalized_reconstruction, run_trajectory
from bcosdiff.networks import UNet
from bcosdiff.service import explain_prompt

PROCESSES = [
    DiffusionProcess(target="x0"),
    DiffusionProcess(target="eps"),
    DiffusionProcess(target="unit_eps"),
    DiffusionProcess(target="v"),
]


def _setup(process, dtype=torch.float64, seed=0, **unet_options):
    torch.manual_seed(seed)
    unet = UNet(tiny_unet_config(**unet_options)).to(dtype).eval()
    g = torch.Generator().manual_seed(seed + 1)
    context = torch.randn(1, 5, 12, generator=g, dtype=dtype)
    mask = torch.tensor([[False, True, True, True, False]])
    x_T = process.prior_sample((1, 6, 8, 8), g).to(dtype)
    return unet, context, mask, x_T


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: p.target)
def test_trajectory_is_the_sampling_run(process):
    unet, context, mask, x_T = _setup(process)
    sources = RunSources.for_run(unet, process, context, x_T, 5)
    with torch.no_grad():
        expected = ddim_sample(lambda x, t: unet(x, t, context, mask), process, x_T, 5)
        got = run_trajectory(unet, process, sources, steps=5, context_mask=mask)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: p.target)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_contributions_of_all_sources_add_up_to_the_output(process, dtype):
    """Prompt + x_T + time features + μ terms = the generated 6-channel sample."""
    unet, context, mask, x_T = _setup(process, dtype)
    result = explain_run(
        unet,
        process,
        steps=4,
        context=context,
        x_T=x_T,
        context_mask=mask,
        contributions=False,
        decompose_sources=True,
    )
    total = sum(result.sources.values())
    rel = ((total - result.sample).norm() / result.sample.norm()).item()
    assert rel < 1e-4
    torch.testing.assert_close(result.sources["prompt"], result.reconstruction)
    assert result.sources["prompt"].abs().max() > 0 and result.sources["x_T"].abs().max() > 0


def test_without_explanation_mode_the_sources_do_not_add_up():
    process = PROCESSES[0]
    unet, context, mask, x_T = _setup(process)
    primals = [
        p.clone().requires_grad_()
        for p in RunSources.for_run(unet, process, context, x_T, 4).as_tuple()
    ]
    out = run_trajectory(unet, process, RunSources(*primals), steps=4, context_mask=mask)
    probe = out.detach()
    grads = torch.autograd.grad((out * probe).sum(), primals)
    rebuilt = sum((g * p).sum() for g, p in zip(grads, primals, strict=True))
    target = (out * probe).sum()
    assert abs((rebuilt - target) / target).item() > 1e-2  # live dynamic factors: no summary


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: p.target)
def test_replay_and_autodiff_agree(process):
    """Two independent computations: the batched linear replay, and JVP/VJP autodiff."""
    unet, context, mask, x_T = _setup(process)
    replay = explain_run(
        unet, process, steps=4, context=context, x_T=x_T, context_mask=mask, method="replay"
    )
    autodiff = explain_run(
        unet,
        process,
        steps=4,
        context=context,
        x_T=x_T,
        context_mask=mask,
        method="jvp",
        token_chunk=2,
    )
    for name in ("sample", "reconstruction", "contributions", "token_contributions", "relevance"):
        torch.testing.assert_close(getattr(replay, name), getattr(autodiff, name), msg=name)


@pytest.mark.parametrize(
    "options",
    [
        {"centred_norms": True},
        {"time_embedding": "ordinary"},
        {"linear_shortcuts": True},
        {"full_resolution_b": 1.0},
    ],
    ids=["centred-norms", "ordinary-time-embedding", "linear-shortcuts", "full-resolution-b"],
)
def test_the_unet_options_keep_explanations_complete(options):
    """Every U-Net option (centred norms, an ordinary time MLP outside the explained map,
    B = 1 skip projections, another B at full resolution) leaves the network bias-free in its
    explained inputs: the sources add up to the sample, and the replay
    agrees with autodiff."""
    process = PROCESSES[0]
    unet, context, mask, x_T = _setup(process, **options)
    runs = {
        method: explain_run(
            unet,
            process,
            steps=4,
            context=context,
            x_T=x_T,
            context_mask=mask,
            method=method,
            token_chunk=2,
            decompose_sources=True,
        )
        for method in ("replay", "jvp")
    }
    for result in runs.values():
        scale = float(result.sample.abs().max())
        assert 0 <= result.completeness_residual < 1e-10 * scale
        assert (sum(result.sources.values()) - result.sample).abs().max() < 1e-10 * scale
    for name in ("sample", "contributions", "relevance"):
        torch.testing.assert_close(
            getattr(runs["replay"], name), getattr(runs["jvp"], name), msg=name
        )


@pytest.mark.parametrize("method", ["replay", "jvp"])
def test_the_completeness_residual_is_float_rounding(method):
    """The token rows against the prompt computed as one whole, and the sources against the
    sample: independent computations that agree to float64 rounding."""
    process = PROCESSES[0]
    unet, context, mask, x_T = _setup(process)
    result = explain_run(
        unet,
        process,
        steps=4,
        context=context,
        x_T=x_T,
        context_mask=mask,
        method=method,
        token_chunk=2,
        decompose_sources=True,
    )
    scale = float(result.sample.abs().max())
    assert 0 <= result.completeness_residual < 1e-10 * scale
    whole = (result.contributions.sum(0) - result.reconstruction).abs().max()
    assert float(whole) <= result.completeness_residual


def test_the_completeness_residual_catches_a_replay_that_is_not_linear(monkeypatch):
    """If the layers recomputed their dynamic factors per row (each token row through its own,
    nonlinear map), the token rows would no longer add up to the prompt's row."""
    from contextlib import contextmanager

    from bcosdiff.explain import linear_map

    process = PROCESSES[0]
    unet, context, mask, x_T = _setup(process)
    honest = explain_run(unet, process, steps=4, context=context, x_T=x_T, context_mask=mask)
    real = linear_map.linear_replay

    @contextmanager
    def leaky(model):
        with real(model):
            for module in model.modules():
                if hasattr(module, "shared_factors"):
                    module.shared_factors = False
            yield model

    monkeypatch.setattr(linear_map, "linear_replay", leaky)
    broken = explain_run(unet, process, steps=4, context=context, x_T=x_T, context_mask=mask)
    scale = float(honest.sample.abs().max())
    assert honest.completeness_residual < 1e-10 * scale
    assert broken.completeness_residual > 1e-4 * scale
    torch.testing.assert_close(broken.sample, honest.sample)  # the real run is unchanged


def test_relevance_heatmaps_and_reconstruction_agree():
    process = PROCESSES[0]
    unet, context, mask, x_T = _setup(process)
    result = explain_run(
        unet,
        process,
        steps=4,
        context=context,
        x_T=x_T,
        context_mask=mask,
        method="jvp",
        token_chunk=2,
    )
    # The VJP relevance numerator equals the sum of each token's contribution map.
    torch.testing.assert_close(result.contributions.sum(dim=(1, 2, 3)), result.token_contributions)
    # The token contribution maps add up to the reconstruction, channel by channel.
    torch.testing.assert_close(result.contributions.sum(0), result.reconstruction)
    # Masked tokens contribute exactly nothing; relevance is a distribution over tokens.
    assert result.relevance[0] == 0 and result.relevance[4] == 0
    assert result.relevance.sum().item() == pytest.approx(1.0)
    assert not is_explanation_mode(unet)  # the context manager restored the model


def test_heatmaps_match_per_pixel_backward_passes():
    """Independent computation: a reverse-mode pass per pixel gives that pixel's W row."""
    process = PROCESSES[0]
    unet, context, mask, x_T = _setup(process)
    result = explain_run(
        unet, process, steps=3, context=context, x_T=x_T, context_mask=mask
    )  # the replay
    sources = RunSources.for_run(unet, process, context, x_T, 3)
    with explanation_mode(unet):
        for h, w in ((0, 0), (3, 5), (7, 2)):
            ctx = context.clone().requires_grad_()
            out = run_trajectory(
                unet, process, replace(sources, context=ctx), steps=3, context_mask=mask
            )
            for c in (0, 4):
                (grad,) = torch.autograd.grad(out[0, c, h, w], ctx, retain_graph=True)
                expected = (grad * context).sum(-1)[0]
                torch.testing.assert_close(expected, result.contributions[:, c, h, w])


def test_normalized_reconstruction():
    rgb = torch.rand(3, 4, 4)
    recon = torch.cat([0.6 * rgb, 0.6 * (1 - rgb)])  # a uniformly darker reconstruction
    torch.testing.assert_close(normalized_reconstruction(recon), rgb)


@pytest.mark.parametrize("variant", ["bcos-x0", "bcos-clip-x0"])
def test_pipeline_explain(variant, tmp_path):
    from bcosdiff.pipeline import create_model_directory

    pipe = create_model_directory(
        tmp_path / variant, variant, unet=TINY_UNET, text={"max_length": 12}
    )
    exp = explain_prompt(pipe, "a red circle", steps=3, seed=4)
    if variant == "bcos-x0":
        assert exp.tokens == ["a", "red", "circle"]
    else:  # nothing masked: start, prompt tokens, end, and the padding as [REST]
        assert exp.tokens == ["[CLS]", "a", "red", "circle", "[SEP]", "[REST]"]
    count = len(exp.tokens)
    assert len(exp.relevance) == count == exp.heatmaps.shape[0] == exp.mass_maps.shape[0]
    assert exp.contribution_maps.shape == (count, 6, 8, 8)
    assert sum(exp.relevance) == pytest.approx(1.0) and min(exp.relevance) >= 0
    # The contribution maps add up to the reconstruction, channel by channel.
    torch.testing.assert_close(
        exp.contribution_maps.sum(0), exp.reconstruction, rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(exp.mass_maps, exp.contribution_maps.sum(1))
    assert exp.reconstruction_mse is not None and exp.reconstruction_mse >= 0
    # The explained run is the generated run: same image, bit for bit.
    assert exp.image.tobytes() == pipe.generate("a red circle", steps=3, seed=4).tobytes()
    assert set(exp.to_dict()) >= {
        "prompt",
        "seed",
        "steps",
        "model",
        "tokens",
        "relevance",
        "reconstruction_mse",
        "flagged_tokens",
    }


def test_flagging_rule():
    from bcosdiff.explain.tokens import flag_words, group_words, is_content_word

    words = group_words(
        [(1, "a"), (2, "red"), (3, "flam"), (4, "##ingo"), (5, "and"), (6, "a"), (7, "shark")],
        [0.05, 0.3, 0.2, 0.1, 0.05, 0.05, 0.002],
    )
    assert [w.text for w in words] == ["a", "red", "flamingo", "and", "a", "shark"]
    assert flag_words(words) == ["shark"]
    assert not is_content_word("the") and not is_content_word("42") and not is_content_word(",")
    # Prepositions, also the first words of the relations "next to" and "in front of"
    assert not any(is_content_word(w) for w in ("next", "front", "beside", "behind", "near"))
    assert flag_words(group_words([(1, "cat")], [1.0])) == []  # a lone content word


def test_authors_patch_procedure_agrees_with_jvp_maps():
    from bcosdiff.explain import patch_backward_contributions

    process = PROCESSES[0]
    unet, context, mask, x_T = _setup(process)
    result = explain_run(unet, process, steps=2, context=context, x_T=x_T, context_mask=mask)
    patches = patch_backward_contributions(
        unet, process, steps=2, context=context, x_T=x_T, context_mask=mask, patch=4
    )
    assert patches.shape == (5, 6, 2, 2)
    pooled = result.contributions.unflatten(2, (2, 4)).unflatten(4, (2, 4)).sum(dim=(3, 5))
    torch.testing.assert_close(patches, pooled)


def test_eta_makes_the_explanation_say_it_is_incomplete(tmp_path):
    from bcosdiff.pipeline import create_model_directory

    pipe = create_model_directory(tmp_path / "m", "bcos-x0", unet=TINY_UNET)
    with pytest.warns(UserWarning, match="incomplete"):
        exp = explain_prompt(pipe, "a red circle", steps=3, seed=2, eta=0.8)
    assert exp.complete is False and exp.to_dict()["complete"] is False
    sampled = pipe.run("a red circle", steps=3, seed=2, eta=0.8).image
    assert exp.image.tobytes() == sampled.tobytes()  # still the very run that was sampled
    assert explain_prompt(pipe, "a red circle", steps=3, seed=2).complete is True


def test_vanilla_models_cannot_be_explained(tmp_path):
    from bcosdiff.errors import BcosdiffError
    from bcosdiff.pipeline import create_model_directory

    pipe = create_model_directory(tmp_path / "v", "vanilla", unet=TINY_UNET, text={"max_length": 8})
    with pytest.raises(BcosdiffError, match="only B-cos"):
        explain_prompt(pipe, "a red circle", steps=2)
