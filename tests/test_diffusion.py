"""Mean-shifted diffusion process and deterministic DDIM."""

import pytest
import torch
from conftest import tiny_unet_config

from bcosdiff.diffusion import (
    DDIMSchedule,
    DiffusionProcess,
    StepState,
    ddim_sample,
    ddim_timesteps,
    decode_image,
    encode_image,
    exponential_timesteps,
    image_signal,
    make_ddim_scheduler,
)
from bcosdiff.networks import UNet

PROCESSES = {
    "x0": DiffusionProcess(target="x0"),
    "eps": DiffusionProcess(target="eps"),
    "unit_eps": DiffusionProcess(target="unit_eps"),
    "v": DiffusionProcess(target="v"),
    "vanilla": DiffusionProcess(mean=0.0, std=1.0, target="unit_eps", encoding="rgb"),
}


def _image(n=2, size=8, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_encoding_round_trip():
    rgb = _image()
    for encoding in ("rgb_inv", "rgb"):
        torch.testing.assert_close(decode_image(encode_image(rgb, encoding), encoding), rgb)
    assert encode_image(rgb).shape[1] == 6
    # The image part, read linearly: what a summed score of the prediction should see.
    torch.testing.assert_close(image_signal(encode_image(rgb), "rgb_inv"), rgb - 0.5)
    torch.testing.assert_close(image_signal(encode_image(rgb, "rgb"), "rgb"), 2 * rgb - 1)


def test_forward_process_moments_and_formula():
    process = PROCESSES["x0"]
    x0 = encode_image(_image(n=1, size=64))
    t = torch.tensor([500])
    abar = process.alphas_cumprod()[500].float()
    eps = process.noise(tuple(x0.shape), torch.Generator().manual_seed(0))
    x_t = process.q_sample(x0, t, eps)
    expected = abar.sqrt() * x0 + (1 - abar.sqrt()) * 0.5 + 0.5 * (1 - abar).sqrt() * eps
    torch.testing.assert_close(x_t, expected)
    # Pure-noise end of the chain: x_T ~ N(μ, σ²).
    prior = process.prior_sample((4, 6, 64, 64), torch.Generator().manual_seed(1))
    assert abs(prior.mean().item() - 0.5) < 0.02 and abs(prior.std().item() - 0.5) < 0.02


def test_schedule_endpoints():
    betas = PROCESSES["x0"].betas()
    assert betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(0.00085) and betas[-1].item() == pytest.approx(0.012)


def test_noise_respects_the_encoding_along_the_forward_process():
    process = PROCESSES["x0"]
    x0 = encode_image(_image())
    eps = process.noise(tuple(x0.shape), torch.Generator().manual_seed(0))
    torch.testing.assert_close(eps[:, 3:], -eps[:, :3])
    for t in (0, 250, 999):
        x_t = process.q_sample(x0, torch.tensor([t, t]), eps)
        torch.testing.assert_close(x_t[:, :3] + x_t[:, 3:], torch.ones_like(x_t[:, :3]))


def test_training_targets():
    x0 = encode_image(_image())
    eps = PROCESSES["x0"].noise(tuple(x0.shape))
    t = torch.tensor([0, 999])
    assert torch.equal(PROCESSES["x0"].training_target(x0, eps, t), x0)
    torch.testing.assert_close(PROCESSES["eps"].training_target(x0, eps, t), 0.5 + 0.5 * eps)
    assert torch.equal(PROCESSES["unit_eps"].training_target(x0, eps, t), eps)
    # v = √ᾱ·ε - √(1-ᾱ)·z0: nearly ε at t = 0, nearly -z0 at t = 999, image-encoded as μ + σv.
    abar = PROCESSES["v"].alphas_cumprod()[t].float().view(-1, 1, 1, 1)
    z0 = (x0 - 0.5) / 0.5
    expected = 0.5 + 0.5 * (abar.sqrt() * eps - (1 - abar).sqrt() * z0)
    torch.testing.assert_close(PROCESSES["v"].training_target(x0, eps, t), expected)


def _oracle(process: DiffusionProcess, x0: torch.Tensor):
    """A model that knows the clean image and answers in the process's target."""
    abar_all = process.alphas_cumprod()

    def model(x_t, t):
        if process.target == "x0":
            return x0
        abar = abar_all[t].to(x_t.dtype).view(-1, 1, 1, 1)
        z0 = process.standardise(x0)
        eps = (process.standardise(x_t) - abar.sqrt() * z0) / (1 - abar).sqrt()
        if process.target == "v":
            return 0.5 + 0.5 * (abar.sqrt() * eps - (1 - abar).sqrt() * z0)
        return eps if process.target == "unit_eps" else 0.5 + 0.5 * eps

    return model


@pytest.mark.parametrize("name", list(PROCESSES))
@pytest.mark.parametrize("steps", [1, 4, 25])
def test_true_x0_model_makes_sampling_return_x0(name, steps):
    process = PROCESSES[name]
    x0 = encode_image(_image(), process.encoding).double()
    x_T = process.prior_sample(tuple(x0.shape), torch.Generator().manual_seed(3)).double()
    out = ddim_sample(_oracle(process, x0), process, x_T, steps)
    assert (out - x0).abs().max().item() < 1e-4


def _eq13_sample(model, process: DiffusionProcess, x_T, steps):
    """Paper eq. 13 with σ_t = 0, written out in x coordinates (float64)."""
    abar = process.alphas_cumprod()
    mu, sigma = process.mean, process.std
    x = x_T.double()
    timesteps = ddim_timesteps(process, steps)
    for i, t in enumerate(timesteps):
        a_t = abar[t]
        a_prev = abar[timesteps[i + 1]] if i + 1 < len(timesteps) else torch.tensor(1.0).double()
        pred = model(x, torch.full((x.shape[0],), t))
        if process.target == "x0":
            x0 = pred
            eps = (x - a_t.sqrt() * x0 - (1 - a_t.sqrt()) * mu) / (sigma * (1 - a_t).sqrt())
        elif process.target == "v":  # x0 from v = √ᾱ·ε - √(1-ᾱ)·z0, then ε from x0
            z = (x - mu) / sigma
            z0 = a_t.sqrt() * z - (1 - a_t).sqrt() * (pred - mu) / sigma
            x0 = mu + sigma * z0
            eps = (z - a_t.sqrt() * z0) / (1 - a_t).sqrt()
        else:
            eps = pred if process.target == "unit_eps" else (pred - mu) / sigma
            x0 = (x - (1 - a_t.sqrt()) * mu - sigma * (1 - a_t).sqrt() * eps) / a_t.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev.sqrt()) * mu + sigma * (1 - a_prev).sqrt() * eps
    return x


@pytest.mark.parametrize("name", list(PROCESSES))
@pytest.mark.parametrize("steps", [1, 3, 4, 25])
def test_scheduler_matches_direct_eq13(name, steps):
    process = PROCESSES[name]
    torch.manual_seed(0)
    channels = process.channels
    mix = torch.randn(channels, channels).double() * 0.3

    def model(x_t, t):  # deterministic, nonlinear in x_t and t
        scale = torch.cos(t.double() / 400.0).view(-1, 1, 1, 1)
        return torch.tanh(torch.einsum("oc,nchw->nohw", mix, x_t)) * scale + 0.5

    x_T = process.prior_sample((2, channels, 6, 6), torch.Generator().manual_seed(5)).double()
    ours = ddim_sample(model, process, x_T, steps)
    direct = _eq13_sample(model, process, x_T, steps)
    assert (ours - direct).abs().max().item() < 1e-4


def test_timesteps_start_at_pure_noise_and_cover_any_step_count():
    process = PROCESSES["x0"]
    assert ddim_timesteps(process, 4) == [999, 749, 499, 249]
    assert ddim_timesteps(process, 3) == [998, 665, 332]
    assert len(ddim_timesteps(process, 25)) == 25 and ddim_timesteps(process, 25)[0] == 999
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="steps"):
            ddim_timesteps(process, bad)


def _unet_model(unet, process):
    context = torch.randn(1, 4, unet.config.context_dim, generator=torch.Generator().manual_seed(9))

    def model(x_t, t):
        return unet(x_t, t, context.expand(x_t.shape[0], -1, -1))

    return model


def test_sampling_is_bit_identical_for_the_same_seed():
    process = PROCESSES["x0"]
    unet = UNet(tiny_unet_config()).eval()
    model = _unet_model(unet, process)
    runs = []
    for _ in range(2):
        x_T = process.prior_sample((1, 6, 8, 8), torch.Generator().manual_seed(42))
        with torch.no_grad():
            runs.append(ddim_sample(model, process, x_T, 5))
    assert torch.equal(runs[0], runs[1])
    other = process.prior_sample((1, 6, 8, 8), torch.Generator().manual_seed(43))
    with torch.no_grad():
        assert not torch.equal(runs[0], ddim_sample(model, process, other, 5))


@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_encoding_invariant_holds_along_the_reverse_process(eta):
    """With predictions that respect the encoding, every x_t satisfies x + x_inv = 1."""
    for name in ("x0", "eps"):
        process = PROCESSES[name]
        seen = []
        g = torch.Generator().manual_seed(1)

        def model(x_t, t, process=process, seen=seen):
            seen.append(x_t[:, :3] + x_t[:, 3:])
            rgb = torch.sigmoid(x_t[:, :3] * 3 + t.view(-1, 1, 1, 1) / 500)
            return encode_image(rgb)  # tied: rgb + inv = 1 (μ+σε with μ=0.5 is tied the same way)

        x_T = process.prior_sample((2, 6, 8, 8), g)
        out = ddim_sample(model, process, x_T, 10, eta=eta, generator=g)
        seen.append(out[:, :3] + out[:, 3:])
        assert len(seen) == 11
        for total in seen:
            torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-5)


def test_eta_adds_noise_deterministic_does_not():
    process = PROCESSES["unit_eps"]
    x_T = process.prior_sample((1, 6, 8, 8), torch.Generator().manual_seed(0))

    def model(x_t, t):
        return torch.tanh(x_t - 0.5)

    def run(eta, seed):
        return ddim_sample(
            model, process, x_T, 4, eta=eta, generator=torch.Generator().manual_seed(seed)
        )

    assert not torch.equal(run(1.0, 1), run(1.0, 2))  # fresh noise enters between steps
    assert torch.equal(run(1.0, 1), run(1.0, 1))
    assert torch.equal(run(0.0, 1), run(0.0, 2))  # σ_t = 0: the generator is never used


def test_predicted_x0_inverts_each_target():
    x0 = encode_image(_image()).double()
    t = torch.tensor([100, 800])
    for name in ("x0", "eps", "unit_eps", "v"):
        process = PROCESSES[name]
        eps = process.noise(tuple(x0.shape)).double()
        x_t = process.q_sample(x0, t, eps)
        prediction = process.training_target(x0, eps, t)
        torch.testing.assert_close(process.predicted_x0(prediction, x_t, t), x0)


@pytest.mark.parametrize("name", ["x0", "eps", "unit_eps", "v"])
@pytest.mark.parametrize("eta", [0.0, 0.6])
def test_the_ddim_step_is_bit_identical_to_diffusers_on_uniform_spacing(name, eta):
    process = PROCESSES[name]
    steps = 7
    scheduler = make_ddim_scheduler(process, steps)
    schedule = DDIMSchedule.uniform(process, steps)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 6, 5, 5, generator=g)
    for index, t in enumerate(scheduler.timesteps):
        prediction = torch.randn(z.shape, generator=g)
        noise = torch.randn(z.shape, generator=g)
        ours = schedule.step(index, z, prediction, eta, noise if eta > 0 else None)
        theirs = scheduler.step(
            prediction, int(t), z, eta=eta, variance_noise=noise if eta > 0 else None
        ).prev_sample
        assert torch.equal(ours, theirs)
        z = ours


def test_exponential_schedules_reproduce_the_authors_step_lists():
    early = exponential_timesteps(1000, 30, "early", 30)
    late = exponential_timesteps(1000, 30, "late", 30)
    assert len(early) == len(late) == 30
    assert early[:4] == [999, 965, 961, 956] and early[-2:] == [206, 109]
    assert late[:3] == [999, 891, 794] and late[-2:] == [39, 35]
    schedule = DDIMSchedule.exponential(PROCESSES["x0"], 30, "late")
    assert schedule.timesteps == late
    with pytest.raises(ValueError, match="repeats"):
        exponential_timesteps(1000, 30, "late", 0)  # ⌊δ⌋ = ⌊δ²⌋ = 1
    with pytest.raises(ValueError, match="stage"):
        exponential_timesteps(1000, 30, "middle", 30)


@pytest.mark.parametrize("stage", ["early", "late"])
def test_any_schedule_samples_the_oracle_x0(stage):
    process = PROCESSES["x0"]
    x0 = encode_image(_image()).double()
    x_T = process.prior_sample(tuple(x0.shape), torch.Generator().manual_seed(3)).double()
    schedule = DDIMSchedule.exponential(process, 12, stage)
    out = ddim_sample(_oracle(process, x0), process, x_T, schedule=schedule)
    assert (out - x0).abs().max().item() < 1e-4


def test_schedules_reject_bad_time_steps():
    process = PROCESSES["x0"]
    for bad in ([], [10, 10], [5, 9], [1000], [-1]):
        with pytest.raises(ValueError):
            DDIMSchedule(process, bad)
    with pytest.raises(ValueError, match="match"):
        ddim_sample(
            lambda x, t: x,
            process,
            torch.zeros(1, 6, 2, 2),
            3,
            schedule=DDIMSchedule.uniform(process, 4),
        )


def _toy_model(x_t, t):
    return torch.sigmoid(3 * x_t.roll(1, dims=-1) - t.view(-1, 1, 1, 1) / 700)


def test_callback_sees_every_step_and_can_replace_the_prediction():
    process = PROCESSES["x0"]
    x_T = process.prior_sample((1, 6, 6, 6), torch.Generator().manual_seed(0))
    seen: list[StepState] = []
    out = ddim_sample(_toy_model, process, x_T, 5, callback=seen.append)
    assert [s.index for s in seen] == list(range(5))
    assert [s.t for s in seen] == ddim_timesteps(process, 5)
    assert torch.equal(seen[0].x_t, x_T) and torch.equal(
        out, ddim_sample(_toy_model, process, x_T, 5)
    )
    assert torch.equal(seen[-1].x0, seen[-1].prediction)  # x0 target: the prediction is x0
    target = encode_image(_image(n=1, size=6))

    def replace(state):
        return StepState(state.index, state.t, state.x_t, target, state.x0)

    forced = ddim_sample(_toy_model, process, x_T, 5, callback=replace)
    torch.testing.assert_close(forced, target)


def test_start_step_and_replaced_x_t_continue_a_run_exactly():
    process = PROCESSES["eps"]
    x_T = process.prior_sample((1, 6, 6, 6), torch.Generator().manual_seed(1))
    states = []
    full = ddim_sample(_toy_model, process, x_T, 6, callback=states.append)
    resumed = ddim_sample(_toy_model, process, states[3].x_t, 6, start=3)
    torch.testing.assert_close(resumed, full, rtol=0, atol=1e-6)
    # Replacing x_t at step 0 by the x_t the run would have anyway changes nothing.
    same = ddim_sample(
        _toy_model,
        process,
        x_T,
        6,
        callback=lambda s: StepState(s.index, s.t, s.x_t.clone(), s.prediction, s.x0),
    )
    torch.testing.assert_close(same, full, rtol=0, atol=1e-5)  # x -> z rounding only
    with pytest.raises(ValueError, match="start"):
        ddim_sample(_toy_model, process, x_T, 6, start=6)


def test_injected_noise_equals_the_generator_draws():
    process = PROCESSES["x0"]
    x_T = process.prior_sample((1, 6, 4, 4), torch.Generator().manual_seed(2))
    drawn = ddim_sample(
        _toy_model, process, x_T, 4, eta=0.8, generator=torch.Generator().manual_seed(5)
    )
    g = torch.Generator().manual_seed(5)
    noise = [process.noise((1, 6, 4, 4), g) for _ in range(4)]
    given = ddim_sample(_toy_model, process, x_T, 4, eta=0.8, noise=noise)
    assert torch.equal(drawn, given)
    with pytest.raises(ValueError, match="one noise tensor per step"):
        ddim_sample(_toy_model, process, x_T, 4, eta=0.8, noise=noise[:2])
