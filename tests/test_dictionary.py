"""Dictionary learning: TopK SAE, ITDA, their metrics, and activation capture."""

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_UNET

from bcosdiff.dictionary import (
    ITDA,
    ActivationShards,
    TopKSAE,
    capture_activations,
    dictionary_metrics,
    gradient_pursuit,
    record_updates,
    sites,
    train_sae,
)
from bcosdiff.pipeline import create_model_directory


def _sparse_data(rows: int, dim: int, atoms: int, active: int, seed: int):
    """Rows that are non-negative combinations of ``active`` of ``atoms`` unit vectors."""
    g = torch.Generator().manual_seed(seed)
    dictionary = F.normalize(torch.randn(atoms, dim, generator=g), dim=1)
    codes = torch.zeros(rows, atoms)
    chosen = torch.rand(rows, atoms, generator=g).argsort(1)[:, :active]
    codes.scatter_(1, chosen, torch.rand(rows, active, generator=g) * 2 + 0.5)
    return codes @ dictionary, dictionary


def test_sae_recovers_a_known_sparse_dictionary():
    torch.manual_seed(0)
    x, truth = _sparse_data(8192, 32, 48, 3, seed=1)
    sae = TopKSAE(32, 96, k=3, dead_after=2048)
    sae.fit_normalisation(x)
    g = torch.Generator().manual_seed(2)
    batches = (x[torch.randint(0, len(x), (256,), generator=g)] for _ in range(2500))
    train_sae(sae, batches, lr=3e-3)
    metrics = dictionary_metrics(sae.encode, sae.decode, x.split(1024))
    assert metrics.fvu < 0.1 and metrics.l0 <= 3
    # Decoder directions in the input's units, matched to the true atoms.
    learned = F.normalize(sae.decoder.detach() * sae.scale, dim=1)
    best = (truth @ learned.T).max(1).values
    assert (best > 0.9).float().mean() > 0.8, best
    assert torch.allclose(sae.decoder.norm(dim=1), torch.ones(96), atol=1e-5)


def test_auxk_revives_dead_features():
    x, _ = _sparse_data(2048, 16, 24, 2, seed=3)
    sae = TopKSAE(16, 64, k=2, dead_after=256)
    sae.fit_normalisation(x)
    sae.rows_since_fired.fill_(10_000)  # all dead at the start
    loss, parts = sae.loss(x[:256])
    assert parts["aux"] > 0 and parts["dead"] < 1.0  # the batch's firing features revived
    loss.backward()
    assert sae.encoder.grad.abs().sum() > 0


def test_itda_pursuit_reconstructs_sparse_combinations_exactly():
    g = torch.Generator().manual_seed(4)
    atoms = F.normalize(torch.randn(40, 256, generator=g), dim=1)
    weights = torch.zeros(5, 40)
    for row in range(5):
        chosen = torch.randperm(40, generator=g)[:3]
        weights[row, chosen] = torch.rand(3, generator=g) + 0.5
    x = weights @ atoms
    found = gradient_pursuit(x, atoms, l0=3, iterations=60)
    assert ((found > 0).sum(1) <= 3).all()
    torch.testing.assert_close(found @ atoms, x, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(found, weights, rtol=1e-3, atol=1e-3)


def test_itda_grows_its_dictionary_from_the_data():
    x, _ = _sparse_data(600, 24, 12, 1, seed=5)  # every row is one scaled atom
    itda = ITDA(24, l0=1, threshold=0.1)
    added = itda.fit(x.split(100))
    assert 1 <= added <= 40 and itda.features == added == len(itda.sources)
    assert torch.allclose(itda.atoms.norm(dim=1), torch.ones(added))
    assert float(itda.normalised_loss(x).max()) <= 0.1 + 1e-5
    metrics = dictionary_metrics(itda.encode, itda.decode, x.split(200))
    assert metrics.fvu < 0.05 and metrics.l0 <= 1


def test_capture_streams_updates_per_step_and_position(tmp_path):
    pipe = create_model_directory(
        tmp_path / "m", "bcos-x0", unet=TINY_UNET, text={"max_length": 12}
    )
    names = list(sites(pipe.unet))
    assert names == ["down.2.attn", "middle.0.attn", "up.0.attn", "up.1.attn"]
    site = names[0]
    written = capture_activations(
        pipe,
        ["a red circle", "a blue square"],
        [0, 1],
        tmp_path / "acts",
        [site],
        steps=3,
        shard_rows=100,
        guidance=2.0,
    )
    shards = ActivationShards(tmp_path / "acts" / site)
    height, width = shards.metadata["height"], shards.metadata["width"]
    channels = pipe.unet.config.model_channels * 2
    rows = 2 * 3 * height * width
    assert len(shards) == rows and len(written[site]) == -(-rows // 100)
    assert shards.prompts == ["a red circle", "a blue square"]
    batches = list(shards.batches(64, labels=True))
    x = torch.cat([b["activations"] for b in batches])
    assert x.shape == (rows, channels)
    step = torch.cat([b["step"] for b in batches])
    prompt = torch.cat([b["prompt"] for b in batches])
    position = torch.cat([b["position"] for b in batches])
    # The row of prompt 1, step 2, position 5 is that run's update at that place.
    with record_updates(pipe.unet, [site], rows=1) as records:
        pipe.run("a blue square", steps=3, seed=1, guidance=2.0)
    expected = records[site][2][0, 5]
    chosen = (prompt == 1) & (step == 2) & (position == 5)
    torch.testing.assert_close(x[chosen][0], expected.half().float())


def _steering_pipe(tmp_path):
    from bcosdiff.dictionary import Steering, steering_vector

    pipe = create_model_directory(
        tmp_path / "m", "bcos-x0", unet=TINY_UNET, text={"max_length": 12}
    )
    site = "middle.0.attn"
    channels = sites(pipe.unet)[site].proj_out.out_features
    direction = torch.randn(channels, generator=torch.Generator().manual_seed(6))

    def steer(strength: float) -> Steering:
        return Steering(site, steering_vector(direction, strength, scale=2.0))

    return pipe, steer


def test_steering_with_strength_zero_leaves_the_image_bit_identical(tmp_path):
    pipe, steer = _steering_pipe(tmp_path)
    plain = pipe.generate("a red circle", steps=3, seed=0)
    assert pipe.generate("a red circle", steps=3, seed=0, steering=steer(0.0)).tobytes() == (
        plain.tobytes()
    )
    steered = pipe.sample("a red circle", steps=3, seed=0, steering=steer(3.0))
    assert not torch.equal(steered, pipe.sample("a red circle", steps=3, seed=0))


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_with_steering_the_sources_still_add_up(tmp_path, guidance):
    pipe, steer = _steering_pipe(tmp_path)
    steering = steer(3.0)
    exp = pipe.explain(
        "a red circle", steps=3, seed=1, sources=True, steering=steering, guidance=guidance
    )
    assert set(exp.sources) == {"prompt", "x_T", "time", "mean", "steering"}
    assert exp.sources["steering"].abs().max() > 0
    total = sum(exp.sources.values())
    assert float((total - exp.sample).norm() / exp.sample.norm()) < 1e-4
    generated = pipe.generate("a red circle", steps=3, seed=1, guidance=guidance, steering=steering)
    assert exp.image.tobytes() == generated.tobytes()
    # The vector never enters the token rows: token maps still add up to the prompt's part.
    torch.testing.assert_close(exp.contribution_maps.sum(0), exp.sources["prompt"])
