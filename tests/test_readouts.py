"""Read-outs of per-token contributions: identities, localisation on a toy model, figures."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.func import jacrev

from bcosdiff.evaluation.faithfulness import localisation
from bcosdiff.explain import Explanation
from bcosdiff.explain.readouts import (
    READOUTS,
    background_colour,
    colour,
    colour_change,
    colour_share,
    mass,
    painted_colour,
)
from bcosdiff.explain.tokens import Word

SIZE = 8
REGION = (slice(2, 5), slice(3, 6))  # the 3×3 square the colour word draws


def _paint(rgb, inv, mask):
    """6-channel contribution with per-pair values ``rgb``/``inv`` where ``mask`` is set."""
    out = torch.zeros(6, SIZE, SIZE, dtype=torch.float64)
    for c in range(3):
        out[c][mask] = rgb[c]
        out[3 + c][mask] = inv[c]
    return out


def _toy_contributions(mass_free: bool) -> torch.Tensor:
    """Per-token contributions ``x_i · ∂f/∂x_i`` of a toy linear model of three token
    embeddings, ``f(x) = Σ_i x_i · A_i``. Token 0 ("a") paints the white background
    everywhere; token 1 ("red") changes only the colour of ``REGION`` to red; token 2
    ("circle") paints a little white everywhere. With ``mass_free`` token 1 shifts colour
    without adding mass (its channel sum is zero); otherwise it also carries some of the
    white background's mass, as the trained model's content words do."""
    region = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    region[REGION] = True
    everywhere = torch.ones(SIZE, SIZE, dtype=torch.bool)
    white, nothing = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
    a = 0.8 * _paint(white, nothing, everywhere)
    if mass_free:
        red = _paint((0.0, -1.0, -1.0), (0.0, 1.0, 1.0), region)
    else:
        red = 0.5 * _paint(white, nothing, ~region) + 0.8 * _paint((1, 0, 0), (0, 1, 1), region)
    circle = 0.2 * _paint(white, nothing, everywhere)
    weights = torch.stack([a, red, circle])  # A_i, one per token

    def model(x):  # x: (3,) token "embeddings"
        return (x[:, None, None, None] * weights).sum(0)

    x = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    jacobian = jacrev(model)(x)  # (6, H, W, 3)
    return (jacobian * x).permute(3, 0, 1, 2)  # (tokens, 6, H, W)


@pytest.mark.parametrize("mass_free", [True, False], ids=["colour-shift", "with-mass"])
def test_toy_model_the_colour_map_finds_the_region_the_mass_map_does_not(mass_free):
    contributions = _toy_contributions(mass_free)
    reconstruction = contributions.sum(0)
    region = np.zeros((SIZE, SIZE), bool)
    region[REGION] = True
    # The toy image: a red (or pink) square on white.
    shown = colour(reconstruction)
    assert shown[0, 3, 4] == pytest.approx(1.0) and shown[1, 3, 4] < 0.6 > shown[2, 3, 4]
    assert torch.allclose(shown[:, 0, 0], torch.ones(3, dtype=torch.float64))

    red_map = colour_share(contributions, reconstruction)[1].numpy()
    share, hit = localisation(red_map, region)
    assert share == pytest.approx(1.0) and hit
    # The filler-like tokens paint only background: their colour maps are zero.
    others = colour_share(contributions, reconstruction)[[0, 2]]
    assert others.abs().max() < 1e-9
    # The channel-sum map of the same contribution does not single out the region.
    mass_map = mass(contributions)[1].numpy()
    mass_share, mass_hit = localisation(mass_map, region)
    if mass_free:
        assert np.abs(mass_map).max() < 1e-12 and mass_share is None
    else:
        assert mass_share < 0.3
    # The removal read-out localises too.
    removal_share, _ = localisation(colour_change(contributions, reconstruction)[1].numpy(), region)
    assert removal_share == pytest.approx(1.0)


def test_colour_shares_of_parts_add_up_to_the_departure_from_the_background():
    """``col(R) − b = Σ_i d_i``: projected on the departure, the maps add up to its length."""
    g = torch.Generator().manual_seed(0)
    parts = torch.rand(5, 6, SIZE, SIZE, generator=g, dtype=torch.float64)
    parts[:, :, 2:6, 2:6] *= torch.tensor([3.0, 0.2, 0.2, 0.2, 3.0, 3.0], dtype=torch.float64)[
        :, None, None
    ]
    total = parts.sum(0)
    maps = colour_share(parts, total)
    departure = (colour(total) - background_colour(total)).norm(dim=0)
    keep = departure > 1e-3
    torch.testing.assert_close(maps.sum(0)[keep], departure[keep])
    # The maps depend on the parts linearly: the map of a sum of parts is the sum of maps.
    torch.testing.assert_close(colour_share(parts[:2].sum(0), total), maps[:2].sum(0))


def test_removal_equals_its_closed_form():
    """``col(R) − col(R − c) = (m / (M − m)) · (col(c) − col(R))`` for non-negative parts."""
    g = torch.Generator().manual_seed(1)
    parts = torch.rand(4, 6, SIZE, SIZE, generator=g, dtype=torch.float64) + 0.05
    total = parts.sum(0)
    m = parts[:, :3] + parts[:, 3:]
    big_m = total[:3] + total[3:]
    closed = (m / (big_m - m) * (colour(parts) - colour(total))).abs().sum(1)
    torch.testing.assert_close(colour_change(parts, total), closed)


def test_painted_colour_and_three_channel_fallback():
    red = _paint((1.0, 0.0, 0.0), (0.0, 1.0, 1.0), torch.ones(SIZE, SIZE, dtype=torch.bool))
    assert torch.allclose(painted_colour(red)[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]).double())
    assert torch.allclose(painted_colour(-red)[:, 0, 0], torch.full((3,), 0.5).double())
    rgb = torch.full((2, 3, SIZE, SIZE), -0.4)
    for readout in READOUTS.values():
        assert readout(rgb, rgb.sum(0)).shape == (2, SIZE, SIZE)
    torch.testing.assert_close(colour_share(rgb, rgb.sum(0)), torch.full((2, SIZE, SIZE), 0.6))
    with pytest.raises(ValueError, match="6-channel"):
        colour_share(torch.zeros(1, 4, SIZE, SIZE), torch.zeros(4, SIZE, SIZE))


def _explanation(contributions: torch.Tensor, words: list[str]) -> Explanation:
    count = contributions.shape[0]
    image = Image.fromarray(np.full((SIZE, SIZE, 3), 255, np.uint8))
    return Explanation(
        prompt=" ".join(words),
        seed=0,
        steps=1,
        model="toy",
        tokens=list(words),
        relevance=[1 / count] * count,
        contribution_maps=contributions.float(),
        reconstruction=contributions.sum(0).float(),
        normalized_reconstruction=None,
        reconstruction_mse=None,
        image=image,
        sample=contributions.sum(0).float(),
        flagged_tokens=[],
        words=[Word(w, [k], 1 / count) for k, w in enumerate(words)],
        token_positions=[[k] for k in range(count)],
    )


def test_figure_overlays_share_one_scale_across_words():
    from bcosdiff.report.overlays import word_overlays

    contributions = _toy_contributions(mass_free=False)
    # A second colour word that paints half as much of the same red.
    half = contributions[1] * 0.5
    contributions = torch.cat([contributions, half[None]])
    contributions[0] -= half  # keep the total (and so the image) unchanged
    exp = _explanation(contributions, ["a", "red", "circle", "crimson"])
    overlays, scale = word_overlays(exp)
    maps = exp.word_heatmaps()
    assert scale == pytest.approx(float(maps.abs().max()))
    alpha = overlays[..., 3]
    assert alpha.max() == pytest.approx(1.0)
    # The same pixel: the half-strength word is drawn at half the opacity.
    assert alpha[3, 3, 4] == pytest.approx(alpha[1, 3, 4] / 2, rel=1e-4)
    assert alpha[2].max() < 1e-6  # the white-painting word is invisible
    np.testing.assert_allclose(overlays[1, 3, 4, :3], [1.0, 0.0, 0.0], atol=1e-6)  # it paints red


def test_words_read_out_the_sum_of_their_pieces():
    contributions = _toy_contributions(mass_free=False)
    exp = _explanation(contributions, ["a", "red", "circle"])
    exp.words = [Word("a", [0], 0.3), Word("redcircle", [1, 2], 0.7)]
    summed = contributions[1:].sum(0).float()
    torch.testing.assert_close(exp.word_contributions()[1], summed)
    for name in ("colour", "removal", "mass"):
        expected = READOUTS[name](summed, exp.reconstruction)
        torch.testing.assert_close(exp.word_heatmaps(name)[1], expected)
    with pytest.raises(ValueError, match="unknown read-out"):
        exp.read_out("nope")


def test_heatmap_panels_spread_evenly_over_the_fewest_rows():
    from bcosdiff.report.figures import panel_grid

    assert panel_grid(2) == (1, 2)
    assert panel_grid(6) == (1, 6)
    assert panel_grid(7) == (2, 4)  # not 6 + 1
    assert panel_grid(13) == (3, 5)
    for panels in range(1, 40):
        rows, cols = panel_grid(panels)
        assert cols <= 6 and rows * cols >= panels > (rows - 1) * cols
        assert rows * cols - panels < rows  # no row is left more than one panel short
