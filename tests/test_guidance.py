"""Classifier-free guidance: sampling, training's prompt dropout, and complete explanations."""

import json
from dataclasses import replace

import pytest
import torch
from conftest import TINY_UNET, tiny_unet_config

from bcosdiff.bcos import explanation_mode
from bcosdiff.diffusion import (
    DiffusionProcess,
    check_guidance,
    ddim_sample,
    drop_prompts,
    empty_conditioning,
    guided_prediction,
)
from bcosdiff.errors import BcosdiffError, ModelLoadError
from bcosdiff.explain import BcosOptions, RunSources, explain_run, run_trajectory
from bcosdiff.networks import UNet
from bcosdiff.pipeline import Pipeline, create_model_directory
from bcosdiff.service import explain_prompt

PROCESSES = [DiffusionProcess(target="x0"), DiffusionProcess(target="unit_eps")]


def _setup(process, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    unet = UNet(tiny_unet_config()).to(dtype).eval()
    g = torch.Generator().manual_seed(seed + 1)
    context = torch.randn(1, 5, 12, generator=g, dtype=dtype)
    mask = torch.tensor([[False, True, True, True, False]])
    x_T = process.prior_sample((1, 6, 8, 8), g).to(dtype)
    return unet, context, mask, x_T


def test_guidance_formula_and_branches():
    unet, context, mask, x_T = _setup(PROCESSES[0])
    t = torch.tensor([500])
    with torch.no_grad():
        cond = unet(x_T, t, context, mask)
        uncond = unet(x_T, t, *empty_conditioning(context, mask))
        for scale in (0.0, 2.0, 5.0):
            expected = uncond + scale * (cond - uncond)
            for batched in (True, False):
                got = guided_prediction(unet, x_T, t, context, mask, scale, batched)
                torch.testing.assert_close(got, expected)
        # w = 1 is the conditional call itself, bit for bit; w = 0 ignores the prompt.
        assert torch.equal(guided_prediction(unet, x_T, t, context, mask, 1.0), cond)
        other = torch.randn_like(context)
        torch.testing.assert_close(guided_prediction(unet, x_T, t, other, None, 0.0), uncond)
    assert not torch.allclose(cond, uncond)  # the empty conditioning does change the output
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            check_guidance(bad)


def test_prompt_dropout_empties_whole_prompts():
    context = torch.randn(400, 5, 12)
    mask = torch.ones(400, 5, dtype=torch.bool)
    dropped, dropped_mask = drop_prompts(context, mask, 0.25, torch.Generator().manual_seed(0))
    empty = ~dropped_mask.any(1)
    assert 70 < int(empty.sum()) < 130  # about a quarter of 400
    assert torch.equal(dropped[empty], torch.zeros_like(dropped[empty]))
    assert torch.equal(dropped[~empty], context[~empty]) and dropped_mask[~empty].all()
    again = drop_prompts(context, mask, 0.25, torch.Generator().manual_seed(0))
    assert torch.equal(again[1], dropped_mask)  # a function of the generator


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: p.target)
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_guided_sources_add_up_and_replay_matches_autodiff(process, scale):
    """Under guidance the run is still one dynamic linear map: every source's contribution
    adds up to the sample, and the batched replay agrees with JVP/VJP autodiff."""
    unet, context, mask, x_T = _setup(process)
    with torch.no_grad():
        reference = ddim_sample(
            lambda x, t: guided_prediction(unet, x, t, context, mask, scale), process, x_T, 4
        )
    results = {}
    for method in ("replay", "jvp"):
        result = explain_run(
            unet,
            process,
            steps=4,
            context=context,
            x_T=x_T,
            context_mask=mask,
            method=method,
            decompose_sources=True,
            guidance=scale,
            token_chunk=2,
        )
        torch.testing.assert_close(result.sample, reference[0], rtol=0, atol=1e-10)
        total = sum(result.sources.values())
        torch.testing.assert_close(total, result.sample, rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(result.contributions.sum(0), result.reconstruction)
        assert result.sources["prompt"].abs().max() > 0
        results[method] = result
    for name in ("reconstruction", "contributions", "token_contributions", "relevance"):
        torch.testing.assert_close(
            getattr(results["replay"], name), getattr(results["jvp"], name), msg=name
        )
    for name in ("x_T", "time", "mean"):
        torch.testing.assert_close(
            results["replay"].sources[name], results["jvp"].sources[name], msg=name
        )


def test_under_guidance_the_prompt_acts_through_the_conditional_branch_only():
    """Per-pixel backward passes: the prompt's contribution at one step equals w times the
    conditional branch's ``W_c x`` (the unconditional branch has no prompt input)."""
    process = PROCESSES[0]
    unet, context, mask, x_T = _setup(process)
    sources = RunSources.for_run(unet, process, context, x_T, 1)
    with explanation_mode(unet):
        ctx = context.clone().requires_grad_()
        guided = run_trajectory(
            unet, process, replace(sources, context=ctx), steps=1, context_mask=mask, guidance=3
        )
        (grad_guided,) = torch.autograd.grad(guided[0, 2, 4, 4], ctx)
        ctx = context.clone().requires_grad_()
        plain = run_trajectory(
            unet, process, replace(sources, context=ctx), steps=1, context_mask=mask
        )
        (grad_plain,) = torch.autograd.grad(plain[0, 2, 4, 4], ctx)
    torch.testing.assert_close(grad_guided, 3 * grad_plain)


@pytest.fixture(scope="module")
def guided_pipe(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model") / "bcos-x0"
    create_model_directory(directory, "bcos-x0", unet=TINY_UNET, text={"max_length": 12})
    config = json.loads((directory / "config.json").read_text())
    config["sampling"] = {"guidance": 3.0}
    (directory / "config.json").write_text(json.dumps(config))
    return Pipeline.from_directory(directory)


def test_model_directory_records_its_default_guidance(guided_pipe, tmp_path):
    assert guided_pipe.guidance == 3.0
    default = guided_pipe.generate("a red circle", steps=3, seed=1)
    same = guided_pipe.generate("a red circle", steps=3, seed=1, guidance=3.0)
    unguided = guided_pipe.generate("a red circle", steps=3, seed=1, guidance=1.0)
    assert default.tobytes() == same.tobytes()  # same seed, same guidance: the same image
    assert default.tobytes() != unguided.tobytes()
    with pytest.raises(BcosdiffError, match="guidance"):
        guided_pipe.generate("a red circle", steps=3, guidance=-1)
    create_model_directory(tmp_path / "m", "bcos-x0", unet=TINY_UNET, text={"max_length": 12})
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert Pipeline.from_directory(tmp_path / "m").guidance == 1.0  # no record: no guidance
    config["sampling"] = {"guidance": "high"}
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="sampling.guidance"):
        Pipeline.from_directory(tmp_path / "m")


def test_guided_explanation_is_the_generated_image_and_its_sources_add_up(guided_pipe):
    exp = explain_prompt(
        guided_pipe, "a red circle", steps=3, seed=2, options=BcosOptions(sources=True)
    )
    assert exp.guidance == 3.0 and exp.to_dict()["guidance"] == 3.0
    assert exp.image.tobytes() == guided_pipe.generate("a red circle", steps=3, seed=2).tobytes()
    assert set(exp.sources) == {"prompt", "x_T", "time", "mean"}
    total = sum(exp.sources.values())
    assert ((total - exp.sample).norm() / exp.sample.norm()).item() < 1e-4
    torch.testing.assert_close(exp.sources["prompt"], exp.reconstruction)
    assert exp.completeness_residual < 1e-4 * float(exp.sample.abs().max())
    with pytest.raises(BcosdiffError, match="takes CrossAttentionOptions, not BcosOptions"):
        explain_prompt(
            guided_pipe, "a red circle", steps=3, method="xattn", options=BcosOptions(sources=True)
        )


@pytest.mark.parametrize("method", ["xattn", "dfrise", "dfcam", "gradxinput"])
def test_posthoc_methods_run_under_guidance(guided_pipe, method):
    from bcosdiff.explain import RiseOptions, get_method

    run = guided_pipe.run("a red circle", steps=3, seed=2)
    assert run.guidance == 3.0
    factory = get_method(method)
    options = RiseOptions(masks=8) if method == "dfrise" else None
    explainer = factory(guided_pipe, options)
    exp = explainer.attribute(run)
    assert exp.guidance == 3.0
    assert exp.image.tobytes() == guided_pipe.generate("a red circle", steps=3, seed=2).tobytes()
    maps = exp.word_heatmaps()
    assert torch.isfinite(maps).all() and maps.shape[-2:] == (8, 8)
