"""Dictionary learning: TopK SAE, ITDA, their metrics, and activation capture."""

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_UNET, assert_pixels_agree

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
from bcosdiff.explain import BcosOptions
from bcosdiff.pipeline import create_model_directory
from bcosdiff.service import explain_prompt


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
        prompts=["a red circle", "a blue square"],
        seeds=[0, 1],
        out=tmp_path / "acts",
        names=[site],
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
    steered = pipe.run("a red circle", steps=3, seed=0, steering=steer(3.0)).sample
    assert not torch.equal(steered, pipe.run("a red circle", steps=3, seed=0).sample)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_with_steering_the_sources_still_add_up(tmp_path, guidance):
    pipe, steer = _steering_pipe(tmp_path)
    steering = steer(3.0)
    exp = explain_prompt(
        pipe,
        "a red circle",
        steps=3,
        seed=1,
        options=BcosOptions(sources=True),
        steering=steering,
        guidance=guidance,
    )
    assert set(exp.sources) == {"prompt", "x_T", "time", "mean", "steering"}
    assert exp.to_dict()["steering"]["site"] == "middle.0.attn"
    assert exp.sources["steering"].abs().max() > 0
    total = sum(exp.sources.values())
    assert float((total - exp.sample).norm() / exp.sample.norm()) < 1e-4
    # The explanation replays the run from its inputs as one batch; the sampled run's floats
    # agree with it to rounding, so its image to within a level.
    sampled = pipe.run("a red circle", steps=3, seed=1, guidance=guidance, steering=steering)
    torch.testing.assert_close(exp.sample, sampled.sample[0], rtol=1e-4, atol=1e-5)
    assert_pixels_agree(exp.image, sampled.image)
    # The vector never enters the token rows: token maps still add up to the prompt's part.
    torch.testing.assert_close(exp.contribution_maps.sum(0), exp.sources["prompt"])


def test_sae_command_line_from_capture_to_steering(tmp_path, capsys):
    import json

    from bcosdiff.cli import main
    from bcosdiff.dictionary.store import load_dictionary

    model = tmp_path / "m"
    create_model_directory(model, "bcos-x0", unet=TINY_UNET, text={"max_length": 12})
    capsys.readouterr()
    assert main(["sae", "sites", "-m", str(model)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[1] == "middle.0.attn\t32 channels\t4x4" and len(listed) == 4
    acts = tmp_path / "acts"
    argv = ["sae", "capture", "-m", str(model), "--site", "middle.0.attn", "--prompts", "6"]
    argv += ["--steps", "3", "--shard-rows", "100", "--out", str(acts), "--no-progress"]
    assert main(argv) == 0
    site = acts / "middle.0.attn"
    assert len(list(site.glob("shard-*.safetensors"))) == 3  # 6 prompts x 3 steps x 16 rows
    for kind in ("sae", "itda", "neurons"):
        out = tmp_path / f"{kind}.safetensors"
        argv = ["sae", "train", str(site), "--kind", kind, "--features", "32", "--k", "4"]
        assert main([*argv, "--steps", "40", "--batch", "64", "--out", str(out)]) == 0
        report = json.loads(out.with_suffix(".json").read_text())
        assert report["site"] == "middle.0.attn" and report["held_out"]["rows"] > 0
        stored = load_dictionary(out)
        assert stored.kind == kind and stored.update_norm > 0
    assert json.loads((tmp_path / "neurons.json").read_text())["held_out"]["fvu"] == 0.0
    interp = tmp_path / "interp"
    argv = ["sae", "interpret", str(tmp_path / "sae.safetensors"), "-m", str(model)]
    argv += ["--images", "6", "--cards", "2", "--min-rows", "5", "--out", str(interp)]
    assert main(argv) == 0
    data = json.loads((interp / "interpretation.json").read_text())
    assert data["summary"]["scored"] == len(data["features"]) > 0
    assert all(0 <= f["auroc"] <= 1 and f["precision"] <= 1 for f in data["features"])
    assert len(list(interp.glob("feature-*.png"))) == 2
    # Steering from the command line: strength 0 is the plain image, 5 is not.
    images = {}
    for strength in ("0", "5"):
        out = tmp_path / f"steer{strength}.png"
        argv = ["generate", "a red circle", "-m", str(model), "--steps", "3", "--out", str(out)]
        steer = ["--dictionary", str(tmp_path / "sae.safetensors"), "--steer", f"1:{strength}"]
        assert main([*argv, *steer]) == 0
        images[strength] = out.read_bytes()
    plain = tmp_path / "plain.png"
    assert (
        main(["generate", "a red circle", "-m", str(model), "--steps", "3", "--out", str(plain)])
        == 0
    )
    assert images["0"] == plain.read_bytes() != images["5"]
    capsys.readouterr()
    assert main([*argv, "--dictionary", str(tmp_path / "sae.safetensors"), "--steer", "x"]) == 2
    assert main([*argv, "--dictionary", str(tmp_path / "sae.safetensors"), "--steer", "999:1"]) == 2
    assert main([*argv, "--steer", "1:1"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("bcosdiff: error:") for e in errors)


def test_average_ranks_and_auroc_handle_ties():
    from bcosdiff.dictionary.interpret import average_ranks, feature_auroc

    ranks = average_ranks(torch.tensor([0.0, 2.0, 0.0, 1.0]))
    assert ranks.tolist() == [1.5, 4.0, 1.5, 3.0]
    codes = torch.tensor([[0.0], [0.0], [1.0], [2.0]])
    masks = torch.tensor([[False, True], [False, False], [True, False], [True, True]])
    auroc = feature_auroc(codes, masks)
    assert auroc[0, 0] == 1.0  # the feature fires exactly on the attribute
    # Pairs (positive, negative): tie 0.5, loss 0, win 1, win 1 -> 2.5 / 4.
    assert auroc[0, 1] == pytest.approx(0.625)
    # Agreement with torchmetrics on random sparse codes with many ties.
    from torchmetrics.functional.classification import binary_auroc

    g = torch.Generator().manual_seed(7)
    codes = torch.relu(torch.randn(500, 3, generator=g)).round(decimals=1)
    masks = torch.rand(500, 4, generator=g) < 0.3
    ours = feature_auroc(codes, masks)
    for f in range(3):
        for a in range(4):
            theirs = binary_auroc(codes[:, f], masks[:, a].long())
            assert float(ours[f, a]) == pytest.approx(float(theirs), abs=1e-6)


def test_precision_credits_a_sparse_feature_that_fires_only_on_its_attribute():
    from bcosdiff.dictionary.interpret import feature_auroc, feature_precision

    masks = torch.zeros(100, 2, dtype=torch.bool)
    masks[:20, 0] = True  # attribute 0 covers 20 % of the positions
    masks[:, 1] = ~masks[:, 0]
    codes = torch.zeros(100, 2)
    codes[:5, 0] = 1.0  # fires on a quarter of attribute 0 and nowhere else
    codes[:, 1] = torch.rand(100, generator=torch.Generator().manual_seed(8))  # everywhere
    precision, gain = feature_precision(codes, masks)
    assert precision[0, 0] == 1.0 and gain[0, 0] == 1.0
    assert feature_auroc(codes, masks)[0, 0] == pytest.approx(0.625)  # recall penalised
    assert abs(float(gain[1, 0])) < 0.2 and abs(float(gain[1, 1])) < 0.2


def test_broken_dictionary_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    from bcosdiff.dictionary.store import load_dictionary
    from bcosdiff.errors import BcosdiffError

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors at all")
    with pytest.raises(BcosdiffError, match="cannot read dictionary"):
        load_dictionary(junk)
    bare = tmp_path / "bare.safetensors"
    save_file({"atoms": torch.zeros(2, 3)}, str(bare))  # no header metadata
    with pytest.raises(BcosdiffError, match="not a bcosdiff dictionary"):
        load_dictionary(bare)


def test_a_failed_shard_write_leaves_no_partial_shard(tmp_path, monkeypatch):
    from bcosdiff.dictionary import capture

    def broken(tensors, path, metadata=None):
        with open(path, "wb") as handle:
            handle.write(b"half a shard")
        raise OSError("disk full")

    monkeypatch.setattr(capture, "save_file", broken)
    writer = capture.ShardWriter(tmp_path / "site", 4, {"site": "x"})
    labels = {k: torch.zeros(4, dtype=torch.long) for k in capture.LABELS}
    with pytest.raises(OSError, match="disk full"):
        writer.add(torch.zeros(4, 3), labels)
    assert list((tmp_path / "site").iterdir()) == []
