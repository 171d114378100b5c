"""The faithfulness measures on inputs whose answers are known by hand."""

import numpy as np
import pytest
import torch

from bcosdiff.evaluation.faithfulness.metrics import auroc, localisation, spearman, specificity
from bcosdiff.evaluation.faithfulness.report import MEASURES, summarise
from bcosdiff.evaluation.faithfulness.scoring import Tally, align
from bcosdiff.evaluation.insertion import trapezoid_auc


def test_auroc_known_answers():
    # Low scores mark the positives; a perfect separation, a perfect inversion, and a
    # hand-counted case: of the 2 x 2 (positive, negative) pairs, 3 are ordered right.
    assert auroc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 1.0
    assert auroc([0.8, 0.9, 0.1, 0.2], [True, True, False, False]) == 0.0
    assert auroc([0.1, 0.5, 0.3, 0.9], [True, True, False, False]) == pytest.approx(0.75)
    assert auroc([0.1, 0.5, 0.3, 0.9], [False, False, True, True], higher=True) == (
        pytest.approx(0.75)
    )
    assert auroc([0.3, float("inf")], [True, False]) == 1.0  # inf counts as the largest
    assert auroc([0.1, 0.2], [True, True]) is None  # one kind of case only


def test_localisation_and_specificity_known_answers():
    own = np.zeros((4, 4), bool)
    own[:2, :2] = True
    other = np.zeros((4, 4), bool)
    other[2:, 2:] = True
    heat = np.zeros((4, 4))
    heat[own] = 1.0  # 4 units on its own object
    heat[other] = 0.25  # 1 unit on the other
    heat[0, 3] = 3.0  # 3 units on the background, and the maximum
    mass, hit = localisation(heat, own)
    assert mass == pytest.approx(4 / 8) and hit is False
    assert specificity(heat, own, other) == pytest.approx(4 / 5)
    assert specificity(-heat, own, other) is None
    assert specificity(heat, other, own) == pytest.approx(1 / 5)


def test_spearman_and_trapezoid_known_answers():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None
    # A curve falling linearly from 1 to 0 has area 1/2; a constant curve its value.
    assert trapezoid_auc(torch.linspace(1, 0, 11)) == pytest.approx(0.5)
    assert trapezoid_auc(torch.full((5,), 0.3)) == pytest.approx(0.3)


def test_alignment_skips_words_the_truth_lacks():
    assert align(["a", "red", "zz", "circle"], ["a", "Red", "circle", "and"]) == [0, 1, None, 2]


def test_every_measure_is_computed_from_a_tally():
    tally = Tally()
    for value in (0.2, 0.4):
        tally.add("mass_single", value)
    tally.add("relevance_object", 0.3)
    tally.add("relevance_filler", 0.1)
    tally.values["object_score"] += [0.1, 0.9]
    tally.values["object_missed"] += [True, False]

    class Truth:
        name, key_words_label = "shapes", "colour/shape words"

    result = summarise("m", 2, tally, Truth())
    assert set(result.metrics) == {m.key for m in MEASURES}
    assert result.metrics["localisation_mass_single"] == pytest.approx(0.3)
    assert result.metrics["object_filler_ratio"] == pytest.approx(3.0)
    assert result.metrics["failure_auroc_objects"] == 1.0
    assert result.metrics["token_specificity"] is None and result.counts["objects_missed"] == 1
