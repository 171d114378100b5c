"""The attribution API and the post-hoc methods: DF-RISE, DF-CAM, cross-attention maps and
gradient × input, on tiny pipelines and on toy models whose answer is known."""

import numpy as np
import pytest
import torch
from conftest import TINY_UNET
from torch import nn
from torch.func import jvp

from bcosdiff.bcos import explicit_attention, observe_attention
from bcosdiff.cli import main
from bcosdiff.errors import BcosdiffError
from bcosdiff.explain import (
    METHODS,
    CamOptions,
    CrossAttentionOptions,
    DFCam,
    DFRise,
    RiseOptions,
    get_method,
)
from bcosdiff.explain.rise import random_masks, structure_similarity
from bcosdiff.explain.xattn import cross_attention_maps
from bcosdiff.pipeline import create_model_directory, load_pipeline
from bcosdiff.service import explain_prompt

PROMPT = "a big red circle and a small blue square"


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    for kind in ("bcos-x0", "vanilla"):
        create_model_directory(root / kind, kind, unet=TINY_UNET, text={"max_length": 16})
    return {kind: root / kind for kind in ("bcos-x0", "vanilla")}


@pytest.fixture(scope="module")
def pipes(model_dirs):
    return {kind: load_pipeline(directory) for kind, directory in model_dirs.items()}


@pytest.mark.parametrize("kind", ["bcos-x0", "vanilla"])
def test_every_method_explains_the_same_generated_image(pipes, kind):
    pipe = pipes[kind]
    run = pipe.run(PROMPT, steps=4, seed=3)
    image = run.image_array()
    assert np.array_equal(image, np.asarray(pipe.generate(PROMPT, steps=4, seed=3)))
    assert len(run.states) == 4
    assert run.progression().shape == (4, pipe.process.channels, 8, 8)
    cheap = {"dfrise": RiseOptions(masks=20, batch=10)}
    for name, factory in METHODS.items():
        if name.startswith("bcos") and kind == "vanilla":
            with pytest.raises(BcosdiffError, match="post-hoc methods work on any model") as err:
                factory(pipe)
            listed = str(err.value).rpartition("(")[2].rstrip(")").split(", ")
            assert listed == sorted({"gradxinput", "xattn", "dfrise", "dfcam"})
            continue
        exp = factory(pipe, cheap.get(name)).attribute(run)
        assert np.array_equal(np.asarray(exp.image), image), name
        maps = exp.word_heatmaps()
        assert maps.shape == (len(exp.words), 8, 8) and torch.isfinite(maps).all(), name
        assert exp.to_dict()["method"] == exp.method
        residual = exp.to_dict()["completeness_residual"]
        if name.startswith("bcos") or name == "gradxinput":  # whole-run, additive
            assert 0 <= residual < 1e-4 * float(exp.sample.abs().max()), name
        else:
            assert residual is None, name
        if exp.relevance is not None:
            assert abs(sum(exp.relevance) - 1) < 1e-4 or pipe.text.config.mode != "subword"
            assert min(exp.relevance) >= 0, name
        if name == "xattn":  # attention probabilities: nonnegative, and words differ
            assert (maps >= 0).all() and maps.sum() > 0
            assert not torch.allclose(maps[0], maps[-1])
        if name.startswith(("dfrise", "dfcam")):  # one image-level map, repeated for each word
            assert exp.saliency is not None and exp.saliency.shape == (8, 8)
            assert torch.isfinite(exp.saliency).all() and exp.saliency.abs().sum() > 0
            assert torch.equal(maps[0], maps[-1])


def test_words_keeps_only_the_named_words(pipes):
    pipe = pipes["vanilla"]
    run = pipe.run(PROMPT, steps=3, seed=0)
    xattn = get_method("xattn")(pipe)
    exp = xattn.attribute(run, CrossAttentionOptions(words=["Red", "square"]))
    assert [w.text for w in exp.words] == ["red", "square"]
    with pytest.raises(BcosdiffError, match="not in the prompt"):
        xattn.attribute(run, CrossAttentionOptions(words=["shark"]))
    with pytest.raises(BcosdiffError, match="takes CrossAttentionOptions, not RiseOptions"):
        xattn.attribute(run, RiseOptions(masks=4))


def test_pipeline_explain_dispatches_on_the_method(pipes):
    pipe = pipes["vanilla"]
    exp = explain_prompt(pipe, PROMPT, steps=3, seed=1, method="xattn")
    assert exp.method == "xattn" and exp.token_maps is not None and exp.flagged_tokens == []
    with pytest.raises(BcosdiffError, match="unknown method"):
        explain_prompt(pipe, PROMPT, steps=3, method="lime")
    with pytest.raises(BcosdiffError, match="regenerate needs a method that flags words"):
        explain_prompt(pipe, PROMPT, steps=3, method="xattn", regenerate=2)


def test_explain_cli_writes_cross_attention_maps_for_a_vanilla_model(model_dirs, tmp_path, capsys):
    model = str(model_dirs["vanilla"])
    out = tmp_path / "xattn"
    argv = ["explain", PROMPT, "--method", "xattn", "-m", model, "--steps", "3", "--out", str(out)]
    assert main(argv) == 0
    assert (out / "heatmaps.png").stat().st_size > 0 and (out / "relevance.png").exists()
    assert not (out / "reconstruction.png").exists()
    capsys.readouterr()
    assert main(["explain", PROMPT, "--method", "nope", "-m", model, "--out", str(out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# -- cross-attention ---------------------------------------------------------------------


def test_the_attention_observer_sees_probabilities_without_changing_the_output(pipes):
    unet = pipes["bcos-x0"].unet
    cond = pipes["bcos-x0"].encode([PROMPT])
    x = torch.rand(2, 6, 8, 8)
    t = torch.tensor([10, 900])
    context = cond.embeddings.expand(2, -1, -1)
    mask = cond.mask.expand(2, -1)
    with torch.no_grad():
        plain = unet(x, t, context, mask)
        seen = []
        with observe_attention(unet, lambda name, m, a: seen.append((name, a))) as names:
            observed = unet(x, t, context, mask)
        assert torch.equal(plain, observed)
        assert names and len(seen) == len(names)
        for _, probs in seen:
            assert probs.shape[0] == 2 and probs.shape[-1] == context.shape[1]
            torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))
            assert (probs[..., ~cond.mask[0]] == 0).all()  # masked tokens get nothing
        assert all(m.observer is None for m in unet.modules() if hasattr(m, "observer"))


def test_explicit_attention_matches_the_fused_kernel_and_has_forward_mode(pipes):
    unet = pipes["vanilla"].unet
    cond = pipes["vanilla"].encode([PROMPT])
    x, t = torch.rand(1, pipes["vanilla"].process.channels, 8, 8), torch.tensor([500])

    def f(c):
        return unet(x, t, c, cond.mask)

    with torch.no_grad():
        fused = f(cond.embeddings)
        with explicit_attention(unet):
            explicit = f(cond.embeddings)
            _, tangent = jvp(f, (cond.embeddings,), (cond.embeddings,))
    torch.testing.assert_close(explicit, fused, rtol=1e-4, atol=1e-5)
    assert torch.isfinite(tangent).all()


def test_cross_attention_maps_of_all_tokens_add_up_to_one_per_pixel(pipes):
    pipe = pipes["bcos-x0"]
    run = pipe.run(PROMPT, steps=3, seed=2)
    maps, count = cross_attention_maps(pipe, run)
    layers = sum(1 for m in pipe.unet.modules() if getattr(m, "is_cross", False))
    assert (
        count == 3 * sum(m.heads for m in pipe.unet.modules() if getattr(m, "is_cross", False))
        and layers > 0
    )
    # Probabilities sum to 1 over attended tokens; upsampling is linear, clamping is rare.
    torch.testing.assert_close(maps.sum(0), torch.ones(8, 8), rtol=0, atol=0.02)
    assert (maps[~run.conditioning.mask[0]] == 0).all()


# -- gradient × input --------------------------------------------------------------------


def test_gradient_input_totals_agree_between_the_vjp_and_the_jvp_maps(pipes):
    pipe = pipes["vanilla"]
    run = pipe.run(PROMPT, steps=3, seed=4)
    exp = get_method("gradxinput")(pipe).attribute(run)
    totals = exp.contribution_maps.sum(dim=(1, 2, 3)).abs()
    relevance = (
        totals
        / exp.contribution_maps.new_tensor(
            [abs(float(c)) for c in exp.contribution_maps.sum(dim=(1, 2, 3))]
        ).sum()
    )
    torch.testing.assert_close(
        relevance, torch.tensor(exp.relevance, dtype=relevance.dtype), rtol=1e-3, atol=1e-4
    )


# -- DF-RISE -----------------------------------------------------------------------------


class _Counting(nn.Module):
    """Toy model: ``P + c·Q`` with fixed patterns ``P``, ``Q`` and ``c`` the mean of ``x_t``
    over the top-left 2×2 block, so only that block matters; counts the rows it evaluates."""

    def __init__(self):
        super().__init__()
        self.config = type("Config", (), {"kind": "vanilla"})()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("p", torch.rand(1, 3, 8, 8, generator=g))
        self.register_buffer("q", torch.rand(1, 3, 8, 8, generator=g))
        self.rows = 0

    def forward(self, x, t, context, mask=None):
        self.rows += x.shape[0]
        c = x[..., :2, :2].mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)
        return self.p + 4 * c * self.q


@pytest.mark.parametrize("grid", [None, 4])
def test_df_rise_calls_the_model_once_per_mask_and_finds_the_planted_region(pipes, grid):
    pipe = pipes["vanilla"]
    run = pipe.run(PROMPT, steps=4, seed=5)
    step = run.step_index()
    toy = _Counting()
    state = run.states[step]
    state.x_t = 0.5 + 0.5 * torch.rand(1, 3, 8, 8)  # image-like, away from μ = 0
    state.prediction = toy(state.x_t, None, None)  # the run as the toy model would make it
    toy.rows = 0
    real, pipe.unet = pipe.unet, toy
    try:
        saliency = DFRise(pipe, RiseOptions(batch=100, grid=grid, seed=1)).saliency(run)  # N = 500
    finally:
        pipe.unet = real
    assert toy.rows == 500
    y, x = np.unravel_index(int(saliency.argmax()), saliency.shape)
    assert y < 2 and x < 2, (grid, saliency)
    assert float(saliency[:2, :2].mean()) > 2 * float(saliency[2:, 2:].mean())


def test_structure_similarity_orders_agreement_and_masks_keep_their_rate():
    a = torch.rand(3, 6, 16, 16)
    noisy = a + 0.3 * torch.rand(3, 6, 16, 16)
    same, close, opposite = (structure_similarity(a, b).mean() for b in (a, noisy, -a))
    assert same > close > 0 > opposite
    g = torch.Generator().manual_seed(0)
    pixel = random_masks(400, 16, 0.3, None, g)
    smooth = random_masks(400, 16, 0.3, 4, g)
    assert abs(float(pixel.mean()) - 0.3) < 0.02 and abs(float(smooth.mean()) - 0.3) < 0.05
    assert smooth.shape == (400, 1, 16, 16) and ((smooth > 0) & (smooth < 1)).any()


# -- DF-CAM ------------------------------------------------------------------------------


class _TwoChannels(nn.Module):
    """Toy U-Net: one block with a distractor channel (large everywhere, unused) and a
    channel that is ``x`` inside the bottom-right 4×4 region and 0 elsewhere; the output
    reads the second channel only."""

    def __init__(self):
        super().__init__()
        self.config = type("Config", (), {"kind": "vanilla"})()
        region = torch.zeros(1, 1, 8, 8)
        region[..., 4:, 4:] = 1
        self.register_buffer("region", region)
        self.down = nn.ModuleList([_Block(region)])
        self.middle = nn.ModuleList()
        self.up = nn.ModuleList()

    def forward(self, x, t, context, mask=None):
        return self.down[0](x)[:, 1:2].expand(-1, x.shape[1], -1, -1) * 3.0


class _Block(nn.Module):
    def __init__(self, region):
        super().__init__()
        self.register_buffer("region", region)

    def forward(self, x):
        distractor = x.abs().mean(1, keepdim=True) + 5.0
        signal = x.mean(1, keepdim=True).abs() * self.region + 0 * x[:, :1]
        return torch.cat([distractor, signal], dim=1)


class _EncodedImage(nn.Module):
    """Predicts a dark drawing on white that respects the (rgb, 1 - rgb) encoding, drawn by
    its block's signal channel in one region: the sum of its six channels is 3 per pixel
    whatever ``x`` is."""

    def __init__(self, region):
        super().__init__()
        self.config = type("Config", (), {"kind": "vanilla"})()
        self.down = nn.ModuleList([_Block(region)])
        self.middle = nn.ModuleList()
        self.up = nn.ModuleList()

    def forward(self, x, t, context, mask=None):
        rgb = 1 - self.down[0](x)[:, 1:2].expand(-1, 3, -1, -1)
        return torch.cat([rgb, 1 - rgb], dim=1)


def test_df_cam_scores_what_the_image_draws_under_the_complementary_encoding(pipes):
    """The authors' score, the sum of the network output, is a constant under the
    (rgb, 1 - rgb) encoding: its gradient is zero and so is the map. The default score,
    the predicted image's departure from the background, finds the region that draws."""
    pipe = pipes["bcos-x0"]
    assert pipe.process.encoding == "rgb_inv" and pipe.process.target == "x0"
    run = pipe.run(PROMPT, steps=4, seed=6)
    run.image_array = lambda: np.full((8, 8, 3), 255, np.uint8)  # a white background
    region = torch.zeros(1, 1, 8, 8)
    region[..., :4, 4:] = 1
    fake = _EncodedImage(region)
    out = fake(torch.randn(2, 6, 8, 8), None, None)
    assert torch.allclose(out.sum(dim=(1, 2, 3)), torch.full((2,), 3 * 64.0))
    real, pipe.unet = pipe.unet, fake
    try:
        drawn = DFCam(pipe).block_maps(run)["down.0"]
        output = DFCam(pipe, CamOptions(score="output")).block_maps(run)["down.0"]
    finally:
        pipe.unet = real
    assert float(output.abs().sum()) == 0.0
    assert float(drawn[:4, 4:].sum()) > 0.9 * float(drawn.sum()) > 0
    y, x = np.unravel_index(int(drawn.argmax()), drawn.shape)
    assert y < 4 and x >= 4
    with pytest.raises(ValueError, match="unknown DF-CAM score"):
        CamOptions(score="brightness")


def test_df_cam_highlights_the_only_channel_and_region_that_matter(pipes):
    pipe = pipes["vanilla"]
    run = pipe.run(PROMPT, steps=4, seed=6)
    real, pipe.unet = pipe.unet, _TwoChannels()
    try:
        maps = DFCam(pipe, CamOptions(score="output")).block_maps(run)  # Grad-CAM itself
    finally:
        pipe.unet = real
    cam = maps["down.0"]
    assert float(cam[4:, 4:].sum()) > 0.9 * float(cam.sum())  # not the distractor channel
    y, x = np.unravel_index(int(cam.argmax()), cam.shape)
    assert y >= 4 and x >= 4
    with pytest.raises(ValueError, match="unknown block"):
        DFCam(pipe, CamOptions(blocks=["sideways.3"])).block_maps(run)
