"""Calibrating the failure-detection threshold of a model on its training distribution.

The flagging rule (:mod:`bcosdiff.explain.tokens`) flags a content word whose *peer ratio*
(its score / the median score of the prompt's other content words; the score is the
model's flag signal, relevance or colour change) is below a threshold τ. τ is set from
words the image verifiably shows:

1. draw single-object captions from the training distribution (training templates) of the
   ground truth (:mod:`bcosdiff.evaluation.faithfulness.truth`: shapes by default, or emoji
   scenes);
2. generate and explain each one; the ground truth's reader decides whether the image shows
   each key word (the asked colour and shape, found by the pixel checker; the asked emoji,
   found by retrieval among the real emoji);
3. collect the peer ratios of the key words the image shows ("reflected" words);
4. τ = the ``quantile``-th smallest of those ratios (default 1 %), so at most that share of
   reflected words would be flagged on the calibration captions.

The same run records the peer ratios of the words the image does *not* show (wrong colour or
shape), and what share of them τ would flag: the detector's recall on the calibration set.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..explain.methods import SCORES_ONLY
from ..explain.tokens import check_flag_signal, peer_ratios
from ..service import explain_prompt
from .faithfulness.scoring import align
from .faithfulness.truth import ShapesTruth

__all__ = ["FlagCalibration", "calibrate_flag_ratio", "threshold_at_quantile"]


@dataclass
class FlagCalibration:
    ratio: float  # τ: flag a content word whose peer ratio is below this
    signal: str  # the word score the peer ratio is taken of
    quantile: float
    captions: int
    steps: int
    seed: int
    guidance: float  # the scale the captions were generated at: the model's default
    reflected_words: int
    missed_words: int  # key words the image does not show
    missed_flagged: float | None  # share of those that τ flags (None when there are none)
    truth: str = "shapes"  # the ground truth of the captions (shapes or emoji)

    def to_dict(self) -> dict:
        return asdict(self)


def threshold_at_quantile(ratios: list[float], quantile: float) -> float:
    """The ``floor(quantile · n)``-th smallest ratio: at most ``quantile · n`` lie below it."""
    if not ratios:
        raise ValueError("no reflected words to calibrate on")
    if not 0 <= quantile < 1:
        raise ValueError("quantile must be in [0, 1)")
    ordered = sorted(ratios)
    return ordered[math.floor(quantile * len(ordered))]


def calibrate_flag_ratio(
    pipe,
    *,
    captions: int = 100,
    steps: int = 25,
    seed: int = 0,
    quantile: float = 0.01,
    signal: str = "relevance",
    truth=None,
) -> FlagCalibration:
    """Calibrate τ for ``pipe`` (a B-cos model) and the word score ``signal``
    (:data:`~bcosdiff.explain.tokens.FLAG_SIGNALS`), as the module docstring describes.
    ``truth``: single-object ground truth on training templates (default: shapes of data
    seed ``seed``)."""
    check_flag_signal(signal)  # before the first explanation, not after it
    truth = truth or ShapesTruth(pipe.sample_size, seed, 0.0, held_out=False)
    reflected: list[float] = []
    missed: list[float] = []
    for index in range(captions):
        prompt = truth.prompt(index)
        exp = explain_prompt(pipe, prompt.caption, steps=steps, seed=index, options=SCORES_ONLY)
        found = truth.read(np.asarray(exp.image), prompt)
        positions = align([w.text for w in exp.words], prompt.words)
        where = {id(w): t for w, t in zip(exp.words, positions, strict=True)}
        for word, ratio in peer_ratios(exp.words, signal, exp.word_roles):
            t = where[id(word)]
            if t is None or t not in prompt.key_words:
                continue
            obj = found[prompt.word_objects[t]]
            shown = obj is not None and obj.words_shown.get(t, False)
            (reflected if shown else missed).append(ratio)
    tau = threshold_at_quantile(reflected, quantile)
    return FlagCalibration(
        ratio=float(tau),
        signal=signal,
        quantile=quantile,
        captions=captions,
        steps=steps,
        seed=seed,
        guidance=float(pipe.guidance),
        reflected_words=len(reflected),
        missed_words=len(missed),
        missed_flagged=(sum(r < tau for r in missed) / len(missed)) if missed else None,
        truth=truth.name,
    )
