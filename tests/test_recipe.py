"""Training-recipe options: loss weighting, forced weight norms, schedules, B-cosification
and distillation from an ordinary teacher."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_unet_config
from test_training import TINY

from bcosdiff.bcos import BcosConv2d, BcosLinear
from bcosdiff.diffusion import DiffusionProcess, encode_image
from bcosdiff.errors import BcosdiffError
from bcosdiff.modeldir import load_unet
from bcosdiff.networks import UNet
from bcosdiff.training import TrainConfig, load_checkpoint, train
from bcosdiff.training.recipe import (
    INITIAL_ROW_NORM,
    Teacher,
    adaptive_clip_,
    ema_decay_at,
    immiscible_noise,
    loss_weights,
    lr_factor,
    project_bcos_weights,
)
from bcosdiff.training.transfer import bcosify, bcosify_from
from bcosdiff.variants import get_variant

BCOS = DiffusionProcess.from_dict(get_variant("bcos-x0").diffusion_section())
VANILLA = DiffusionProcess.from_dict(get_variant("vanilla").diffusion_section())


def test_lr_schedules():
    assert lr_factor(0, 10, 100, "constant") == pytest.approx(0.1)
    assert lr_factor(50, 10, 100, "constant") == 1.0
    assert lr_factor(9, 10, 100, "cosine") == 1.0  # the warm-up ends at the full rate
    assert lr_factor(55, 10, 100, "cosine") == pytest.approx(0.5)  # half-way down
    assert lr_factor(100, 10, 100, "cosine") == pytest.approx(0.0, abs=1e-12)
    rates = [lr_factor(s, 10, 100, "cosine") for s in range(10, 101)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    # Warm-up, stable, decay: constant until the last 40 steps, then 1 − √p down to zero.
    assert lr_factor(5, 10, 100, "constant", cooldown=40) == pytest.approx(0.6)
    assert lr_factor(59, 10, 100, "constant", cooldown=40) == 1.0
    assert lr_factor(60, 10, 100, "constant", cooldown=40) == 1.0  # p = 0
    assert lr_factor(70, 10, 100, "constant", cooldown=40) == pytest.approx(0.5)  # p = 1/4
    assert lr_factor(100, 10, 100, "constant", cooldown=40) == 0.0
    rates = [lr_factor(s, 10, 100, "constant", cooldown=40) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    # Before the cool-down the rate does not depend on the run's length.
    assert all(
        lr_factor(s, 10, 100, "constant", 40) == lr_factor(s, 10, 1000, "constant", 40)
        for s in range(60)
    )


@pytest.mark.parametrize("process", [BCOS, VANILLA], ids=["x0", "unit_eps"])
def test_min_snr_weights(process):
    every = torch.arange(process.num_train_timesteps)
    weights = loss_weights(process, every, "min_snr", 5.0)
    assert loss_weights(process, every, "uniform", 5.0) is None
    assert float(weights.mean()) == pytest.approx(1.0, rel=1e-5)  # the loss keeps its scale
    abar = process.alphas_cumprod()
    snr = abar / (1 - abar)
    # Against the definition: min(SNR, γ) on the x0 error, min(SNR, γ)/SNR on ε's.
    raw = snr.clamp(max=5.0) if process.target == "x0" else snr.clamp(max=5.0) / snr
    torch.testing.assert_close(weights.double(), raw / raw.mean(), rtol=1e-5, atol=0)
    if process.target == "x0":  # capped where the SNR is high: the first steps weigh alike
        assert weights[0] == weights[10] and weights[-1] < weights[0] / 100
    else:  # the ε error is not down-weighted where the signal is weak
        assert weights[-1] == weights.max()


def test_min_snr_weights_the_v_error_as_the_x0_error_is_weighted():
    """For v the weight is set so that weight·‖v̂ - v‖² is min(SNR, γ)·‖ẑ0 - z0‖² up to one
    constant: checked through the clean image that a wrong v̂ implies."""
    process = DiffusionProcess(target="v")
    t = torch.tensor([1, 50, 300, 700, 999])
    weights = loss_weights(process, t, "min_snr", 5.0).double()
    abar = process.alphas_cumprod()[t]
    snr = abar / (1 - abar)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(len(t), 6, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x_t = process.q_sample(x0, t, eps)
    wrong = process.training_target(x0, eps, t) + 0.1 * torch.randn(x0.shape, generator=g)
    v_error = (wrong - process.training_target(x0, eps, t)).square().flatten(1).sum(1)
    z0_error = (process.predicted_x0(wrong, x_t, t) - x0).square().flatten(1).sum(1)
    ratio = weights * v_error / (snr.clamp(max=5.0) * z0_error)
    torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio), rtol=1e-6, atol=0)


def test_ema_warmup_forgets_the_start_and_reaches_the_decay():
    assert ema_decay_at(0, 0.999, False) == 0.999
    assert ema_decay_at(0, 0.999, True) == pytest.approx(0.1)
    assert ema_decay_at(90, 0.999, True) == pytest.approx(0.91)
    assert ema_decay_at(10**6, 0.999, True) == 0.999
    kept = math.prod(ema_decay_at(t, 0.999, True) for t in range(500))
    assert kept < 1e-2 < math.prod(ema_decay_at(t, 0.999, False) for t in range(500))


def test_forced_weight_norm_keeps_the_function_and_sets_the_norm():
    torch.manual_seed(0)
    unet = UNet(tiny_unet_config())
    rows = torch.cat(
        [m.weight.flatten(1).norm(dim=1) for m in unet.modules() if isinstance(m, BcosLinear)]
    )
    assert float(rows.detach().mean()) == pytest.approx(INITIAL_ROW_NORM, rel=0.05)
    with torch.no_grad():  # norms grow unevenly, as under Adam
        for m in unet.modules():
            if isinstance(m, BcosConv2d | BcosLinear):
                grow = 1 + 3 * torch.rand(m.weight.shape[0])
                m.weight.mul_(grow.view(-1, *([1] * (m.weight.dim() - 1))))
    x, t = torch.rand(2, 6, 8, 8), torch.tensor([10, 500])
    context = torch.randn(2, 5, 12)
    before = unet(x, t, context)
    project_bcos_weights(unet)
    torch.testing.assert_close(unet(x, t, context), before, rtol=1e-4, atol=1e-5)
    for m in unet.modules():
        if isinstance(m, BcosConv2d | BcosLinear):
            norms = m.weight.flatten(1).norm(dim=1)
            torch.testing.assert_close(norms, torch.full_like(norms, INITIAL_ROW_NORM))


def test_adaptive_clipping_bounds_each_unit_relative_to_its_weight():
    torch.manual_seed(0)
    matrix = torch.nn.Parameter(torch.randn(4, 6))
    vector = torch.nn.Parameter(torch.randn(5))
    matrix.grad = torch.randn(4, 6) * torch.tensor([1e-5, 1e-5, 10.0, 10.0])[:, None]
    vector.grad = torch.randn(5) * 10
    before = matrix.grad.clone()
    adaptive_clip_([matrix, vector], factor=0.01)
    rows, grad_rows = matrix.detach().norm(dim=1), matrix.grad.norm(dim=1)
    torch.testing.assert_close(matrix.grad[:2], before[:2], rtol=0, atol=0)  # small: kept
    torch.testing.assert_close(grad_rows[2:], 0.01 * rows[2:])  # large: down to the bound
    cosine = F.cosine_similarity(matrix.grad[2:], before[2:], dim=1)
    torch.testing.assert_close(cosine, torch.ones(2))  # the direction is kept
    assert float(vector.grad.norm()) == pytest.approx(0.01 * float(vector.detach().norm()))


def test_immiscible_noise_is_a_cheaper_assignment_of_the_same_draws():
    g = torch.Generator().manual_seed(1)
    x0 = encode_image(torch.rand(8, 3, 4, 4, generator=g), "rgb_inv")
    eps = BCOS.noise((8, 6, 4, 4), generator=g)
    assigned = immiscible_noise(x0, eps, BCOS)

    def cost(noise):
        z0 = BCOS.standardise(x0)[:, :3].flatten(1)
        return float((z0 - noise[:, :3].flatten(1)).square().sum())

    rows = {tuple(r.flatten().tolist()) for r in eps}
    assert {tuple(r.flatten().tolist()) for r in assigned} == rows  # a permutation of rows
    assert cost(assigned) <= cost(eps) + 1e-9
    torch.testing.assert_close(assigned[:, 3:], -assigned[:, :3])  # the encoding's tie kept


def test_bcosify_copies_by_name_and_maps_the_input_layer():
    torch.manual_seed(0)
    vanilla = UNet(tiny_unet_config("vanilla", in_channels=3, out_channels=3))
    model = UNet(tiny_unet_config())
    out_before = model.conv_out[2].weight.clone()
    transfer = bcosify(model, vanilla.state_dict())
    assert transfer.mapped == ("conv_in.weight",) and transfer.fresh == ("conv_out.2.weight",)
    assert all(name.endswith(".bias") for name in transfer.dropped)
    own = model.state_dict()
    for name in transfer.copied:
        torch.testing.assert_close(own[name], vanilla.state_dict()[name], rtol=0, atol=0)
    torch.testing.assert_close(model.conv_out[2].weight, out_before, rtol=0, atol=0)
    # The mapped input layer computes the ordinary layer's W·z (bias aside) on the same
    # noisy image: the B-cos run's x_t in (rgb, 1 − rgb) against the vanilla run's z_t.
    rgb, eps = torch.rand(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    t = torch.tensor([100, 800])
    x_t = BCOS.q_sample(encode_image(rgb, "rgb_inv"), t, torch.cat([eps, -eps], 1))
    z_t = VANILLA.q_sample(encode_image(rgb, "rgb"), t, eps)
    torch.testing.assert_close(
        F.conv2d(x_t, model.conv_in.weight, padding=1),
        F.conv2d(z_t, vanilla.conv_in.weight, padding=1),
        rtol=1e-4,
        atol=1e-5,
    )
    with pytest.raises(BcosdiffError, match="not one"):
        bcosify(vanilla, model.state_dict())


def test_teacher_maps_the_noisy_image_and_its_prediction_exactly(tmp_path):
    from bcosdiff.modeldir import save_unet, update_config

    torch.manual_seed(0)
    directory = tmp_path / "teacher"
    save_unet(UNet(tiny_unet_config("vanilla", in_channels=3, out_channels=3)), directory)
    update_config(directory, diffusion=VANILLA.to_dict(), text={"max_length": 16})
    teacher = Teacher(directory, BCOS, torch.device("cpu"))
    rgb, eps = torch.rand(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    t = torch.tensor([30, 400])
    x0 = encode_image(rgb, "rgb_inv")
    x_t = BCOS.q_sample(x0, t, torch.cat([eps, -eps], 1))
    seen = {}

    def oracle(sample, steps, context, mask):  # an ε model that knows the noise
        seen["x_t"] = sample
        return eps

    teacher.unet = oracle
    taught = teacher.predicted_x0(x_t, t, ["a cat", "a dog"], None, 0.0)
    torch.testing.assert_close(
        seen["x_t"], VANILLA.q_sample(encode_image(rgb, "rgb"), t, eps), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(taught, x0, rtol=1e-4, atol=1e-4)  # x0 in the student's encoding


def _vanilla_run(tmp_path):
    config = {**TINY, "variant": "vanilla", "output_dir": str(tmp_path / "v"), "steps": 2}
    return train(TrainConfig.from_dict(config), progress=False)


def test_bcosified_distilled_run_with_every_recipe_option(tmp_path):
    vanilla = _vanilla_run(tmp_path)
    options = {
        **TINY,
        "output_dir": str(tmp_path / "b"),
        "steps": 3,
        "checkpoint_every": 3,
        "init_from": str(vanilla),
        "init_transfer": "bcosify",
        "distill_from": str(vanilla),
        "distill_weight": 0.5,
        "weight_norm": "forced",
        "loss_weighting": "min_snr",
        "lr_schedule": "cosine",
        "agc_factor": 0.01,
        "noise_assignment": "immiscible",
        "ema_warmup": True,
    }
    model_dir = train(TrainConfig.from_dict(options), progress=False)
    parts, state = load_checkpoint(tmp_path / "b" / "checkpoints" / "step-00000003")
    assert state["config"]["init_transfer"] == "bcosify"
    trained = UNet(load_unet(model_dir).config)
    trained.load_state_dict(parts["model"])
    for m in trained.modules():  # held at the initial norm after every step
        if isinstance(m, BcosConv2d | BcosLinear):
            norms = m.weight.flatten(1).norm(dim=1)
            torch.testing.assert_close(norms, torch.full_like(norms, INITIAL_ROW_NORM))
    assert load_unet(model_dir).config.kind == "bcos"
    assert not any(name.endswith(".bias") for name in parts["model"])
    with pytest.raises(BcosdiffError, match="not an ordinary U-Net"):
        bcosify_from(UNet(load_unet(model_dir).config), model_dir)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"init_transfer": "bcosify"}, "needs init_from"),
        ({"lr_schedule": "linear"}, "lr_schedule must be one of"),
        ({"lr_cooldown_steps": -1}, "lr_cooldown_steps must be >= 0"),
        ({"lr_schedule": "cosine", "lr_cooldown_steps": 5}, "needs lr_schedule 'constant'"),
        ({"steps": 100, "warmup_steps": 10, "lr_cooldown_steps": 91}, "into the warm-up"),
        ({"loss_weighting": "snr"}, "loss_weighting must be one of"),
        ({"weight_norm": "on"}, "weight_norm must be one of"),
        ({"min_snr_gamma": 0.0}, "min_snr_gamma must be positive"),
        ({"distill_weight": -1.0}, "distill_weight must be"),
        ({"distill_weight": math.inf}, "distill_weight must be"),
        ({"agc_factor": -0.1}, "agc_factor must be"),
        ({"noise_assignment": "sorted"}, "noise_assignment must be one of"),
    ],
)
def test_recipe_options_are_validated(changes, message):
    with pytest.raises(BcosdiffError, match=message):
        TrainConfig.from_dict({**TINY, **changes})
