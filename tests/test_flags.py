"""Failure detection: the peer-ratio rule, its calibration, and regeneration."""

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import TINY_UNET
from PIL import Image

from bcosdiff.data.shapes import BACKGROUND, ShapesDataset, caption_words
from bcosdiff.evaluation.flags import calibrate_flag_ratio, threshold_at_quantile
from bcosdiff.explain import SCORES_ONLY
from bcosdiff.explain.settings import ExplainSettings
from bcosdiff.explain.tokens import Word, flag_words, peer_ratios, unknown_words
from bcosdiff.service import explain_prompt


def test_peer_ratio_is_relevance_over_the_median_of_the_other_content_words():
    words = [Word("a", [1], 0.5), Word("red", [2], 0.3), Word("shiny", [3], 0.1)]
    words += [Word("circle", [4], 0.2), Word("shark", [5], 0.004)]
    ratios = {w.text: r for w, r in peer_ratios(words)}
    assert set(ratios) == {"red", "shiny", "circle", "shark"}  # "a" is a stop word
    assert ratios["red"] == pytest.approx(0.3 / 0.1)  # median of 0.1, 0.2, 0.004
    assert ratios["shark"] == pytest.approx(0.004 / 0.2)  # median of 0.3, 0.1, 0.2
    assert flag_words(words, 0.1) == ["shark"]
    assert flag_words(words, 0.02) == []
    assert peer_ratios([Word("cat", [1], 1.0), Word("the", [2], 0.0)]) == []
    zero_peers = peer_ratios([Word("red", [1], 1.0), Word("cat", [2], 0.0)])
    assert zero_peers[0][1] == math.inf and zero_peers[1][1] == 0.0


def test_size_and_position_words_are_neither_judged_nor_peers():
    """Their trace is an object's place and extent, which the flag signals do not read."""
    words = [Word("a", [1], 0.5), Word("big", [2], 0.001), Word("red", [3], 0.3)]
    words += [Word("circle", [4], 0.2), Word("on", [5], 0.01), Word("the", [6], 0.01)]
    words += [Word("LEFT", [7], 0.002)]
    ratios = {w.text: r for w, r in peer_ratios(words)}
    assert ratios == {"red": pytest.approx(1.5), "circle": pytest.approx(0.2 / 0.3)}
    assert flag_words(words, 0.5) == [] and flag_words(words, 0.7) == ["circle"]


def test_threshold_at_quantile_flags_at_most_that_share():
    ratios = list(np.random.default_rng(0).lognormal(size=1000))
    for q in (0.0, 0.01, 0.05, 0.5):
        tau = threshold_at_quantile(ratios, q)
        assert sum(r < tau for r in ratios) <= q * len(ratios)
        assert sum(r <= tau for r in ratios) >= q * len(ratios)
    with pytest.raises(ValueError):
        threshold_at_quantile([], 0.01)


class _OracleModel:
    """Draws the dataset's own image for even seeds and a blank one for odd seeds; colour
    and shape words get known relevance, so the calibration's result is known in advance."""

    sample_size = 32
    guidance = 1.0

    def __init__(self, seed):
        self.dataset = ShapesDataset(size=32, seed=seed, two_object_prob=0.0)

    def explain(self, caption, steps, seed, options):
        sample = self.dataset.sample(seed)
        assert sample.caption == caption
        image = sample.image if seed % 2 == 0 else np.full_like(sample.image, BACKGROUND)
        target = sample.objects[0]
        words = []
        for position, text in enumerate(caption_words(caption)):
            relevance = 0.01
            if text == target.colour:
                relevance = 0.5
            elif text == target.shape:
                relevance = 0.05 * (1 + seed % 7)  # a spread of shape ratios
            words.append(Word(text, [position], relevance))
        return SimpleNamespace(image=Image.fromarray(image), words=words, word_roles=None)


def test_calibration_uses_only_words_the_image_shows(monkeypatch):
    import bcosdiff.evaluation.flags as flags

    def oracle_explain(model, caption, *, steps, seed, options):
        return model.explain(caption, steps, seed, options)

    monkeypatch.setattr(flags, "explain_prompt", oracle_explain)
    model = _OracleModel(seed=3)
    calibration = calibrate_flag_ratio(model, captions=20, steps=1, seed=3, quantile=0.0)
    # Even seeds are drawn correctly: 10 colour + 10 shape words; odd seeds show nothing.
    assert calibration.reflected_words == 20 and calibration.missed_words == 20
    shown, missed = [], []
    for seed in range(20):
        words = model.explain(model.dataset.sample(seed).caption, 1, seed, False).words
        ratios = [r for w, r in peer_ratios(words) if w.relevance >= 0.05]
        (missed if seed % 2 else shown).extend(ratios)
    assert calibration.ratio == pytest.approx(min(shown))
    share = sum(r < min(shown) for r in missed) / len(missed)
    assert calibration.missed_flagged == pytest.approx(share)


def test_explain_regenerates_until_no_word_is_flagged(tmp_path):
    from bcosdiff.pipeline import create_model_directory

    pipe = create_model_directory(tmp_path / "m", "bcos-x0", unet=TINY_UNET)
    # Every content word that has peers is flagged (no seed can pass), and no word is
    # misbound (regenerate on binding: test_binding).
    pipe.explain_settings = replace(pipe.explain_settings, flag_ratio=1e9, stray_limit=1.0)
    exp = explain_prompt(pipe, "a red circle", steps=2, seed=3, options=SCORES_ONLY, regenerate=2)
    assert [s for s, *_ in exp.attempts] == [3, 4, 5] and exp.flagged_tokens == ["red", "circle"]
    assert exp.seed == 3  # ties keep the earliest attempt
    assert exp.to_dict()["attempts"][1]["flagged_tokens"] == ["red", "circle"]
    assert exp.to_dict()["attempts"][1]["seed"] == 4
    pipe.explain_settings = replace(pipe.explain_settings, flag_ratio=0.0)  # nothing flagged
    exp = explain_prompt(pipe, "a red circle", steps=2, seed=3, options=SCORES_ONLY, regenerate=2)
    assert exp.attempts == [(3, [], [])] and exp.flagged_tokens == []
    reference = pipe.generate("a red circle", steps=2, seed=3)
    assert exp.image.tobytes() == reference.tobytes()


def test_unknown_words_are_the_content_words_outside_the_training_captions():
    vocabulary = ShapesDataset().vocabulary()
    dataset = ShapesDataset(seed=1)
    for index in range(300):  # every word of every caption the data set makes is inside it
        words = dataset.sample(index).words
        assert all(w.lower() in vocabulary for w in words if w.isalpha())
    assert {"shark", "cat", "sea"}.isdisjoint(vocabulary) and "triangle" in vocabulary
    words = caption_words("The Shark, a red circle and a shark of the sea.")
    assert unknown_words(words, vocabulary) == ["shark", "sea"]  # no stop words, once each
    assert unknown_words(words, None) == []  # a model that lists no vocabulary reports none


def test_regenerating_skips_words_the_model_never_learned(tmp_path):
    """Flagged words outside the vocabulary are reported, but no other seed is tried for
    them; a flagged word the model knows still makes it try the next seed."""
    from bcosdiff.pipeline import create_model_directory

    pipe = create_model_directory(tmp_path / "m", "bcos-x0", unet=TINY_UNET)
    # Every content word with peers is flagged; the model lists its training words.
    pipe.explain_settings = ExplainSettings(
        flag_ratio=1e9, stray_limit=1.0, vocabulary=ShapesDataset().vocabulary()
    )
    exp = explain_prompt(
        pipe, "a shark and a whale", steps=2, seed=3, options=SCORES_ONLY, regenerate=2
    )
    assert exp.flagged_tokens == ["shark", "whale"] and exp.unknown_words == ["shark", "whale"]
    assert [s for s, *_ in exp.attempts] == [3] and exp.findings == []
    assert exp.to_dict()["unknown_words"] == ["shark", "whale"]
    exp = explain_prompt(pipe, "a red shark", steps=2, seed=3, options=SCORES_ONLY, regenerate=2)
    assert [s for s, *_ in exp.attempts] == [3, 4, 5] and exp.findings == ["red"]
    # Unknown vocabulary: every flagged word counts.
    pipe.explain_settings = replace(pipe.explain_settings, vocabulary=None)
    exp = explain_prompt(
        pipe, "a shark and a whale", steps=2, seed=3, options=SCORES_ONLY, regenerate=2
    )
    assert [s for s, *_ in exp.attempts] == [3, 4, 5] and exp.unknown_words == []


def test_the_colour_change_signal_takes_peer_ratios_of_the_removal_maps(tmp_path):
    from bcosdiff.explain.readouts import colour_change
    from bcosdiff.pipeline import create_model_directory

    words = [Word("red", [1], 0.5, colour_change=2.0), Word("circle", [2], 0.4, 4.0)]
    words.append(Word("shark", [3], 0.1, colour_change=0.1))
    by_change = {w.text: r for w, r in peer_ratios(words, "colour_change")}
    assert by_change["shark"] == pytest.approx(0.1 / 3.0)  # median of 2.0 and 4.0
    assert flag_words(words, 0.1, "colour_change") == ["shark"]
    assert flag_words(words, 0.1) == []  # relevance: 0.1 / 0.45 is above 0.1
    with pytest.raises(ValueError, match="unknown flag signal"):
        peer_ratios(words, "nope")

    pipe = create_model_directory(tmp_path / "m", "bcos-x0", unet=TINY_UNET)
    exp = explain_prompt(pipe, "a red circle", steps=2, seed=1)
    for word in exp.words:  # each word's score is the total of its removal map
        contribution = exp.word_contributions()[exp.words.index(word)]
        expected = float(colour_change(contribution, exp.reconstruction).sum())
        assert word.colour_change == pytest.approx(expected, rel=1e-5)
    pipe.explain_settings = ExplainSettings(flag_signal="colour_change", flag_ratio=1e9)
    lean = explain_prompt(pipe, "a red circle", steps=2, seed=1, options=SCORES_ONLY)
    assert lean.contribution_maps is None and lean.flagged_tokens == ["red", "circle"]
    assert lean.to_dict()["flag_signal"] == "colour_change"
    assert [w.colour_change for w in lean.words] == [w.colour_change for w in exp.words]


def test_calibration_rejects_an_unknown_signal():
    with pytest.raises(ValueError, match="unknown flag signal"):
        calibrate_flag_ratio(_OracleModel(seed=0), captions=2, steps=1, signal="nope")


def test_with_the_depicting_words_frame_words_neither_flag_nor_move_the_peers():
    """A word's peer ratio is read against the depicting words only: frame words taking
    much of the relevance ("kids", "white") or almost none ("page") change nothing. A word
    the model never saw ("shark", "page") is still judged against them, but is no peer."""
    from bcosdiff.explain.tokens import WordRoles, flag_words

    roles = WordRoles(
        depicting=frozenset({"red", "circle", "blue", "square"}),
        vocabulary=frozenset({"red", "circle", "blue", "square", "kids", "white", "a"}),
    )
    core = [Word("red", [1], 0.2), Word("circle", [2], 0.3), Word("blue", [4], 0.25)]
    core.append(Word("square", [5], 0.01))

    def ratios(words, roles=roles):
        return {w.text: r for w, r in peer_ratios(words, "relevance", roles)}

    framed = [Word("kids", [0], 0.9), Word("white", [0], 0.8), *core, Word("page", [6], 1e-4)]
    assert ratios(framed) == {**ratios(core), "page": pytest.approx(1e-4 / 0.225)}
    assert ratios(core)["red"] == pytest.approx(0.2 / 0.25)
    assert flag_words(framed, 0.1, "relevance", roles) == ["square", "page"]
    # Without the roles the frame words are peers too: they move every ratio, and are judged.
    assert ratios(framed, None)["red"] == pytest.approx(0.2 / 0.275)
    assert "kids" in ratios(framed, None) and "kids" not in ratios(framed)
    shark = [*core[:3], Word("shark", [6], 0.001)]
    assert ratios(shark)["shark"] == pytest.approx(0.001 / 0.25)
    assert ratios(shark)["red"] == pytest.approx(0.2 / 0.275)  # "shark" is no peer
    assert flag_words(shark, 0.1, "relevance", roles) == ["shark"]
