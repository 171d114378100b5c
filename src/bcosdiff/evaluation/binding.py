"""Does the explanation catch the objects a two-object image did not draw as asked?

On held-out two-object shapes prompts with two distinct colours and two distinct shapes, the
ground truth (:mod:`.faithfulness.truth`) says for every asked object whether it was drawn as
asked (right colour and right shape) or *missed*. On held-out two-emoji scene prompts of
distinct concepts (``data`` an emoji import) an asked emoji is drawn when some region of the
image retrieves it among the top 5 real emoji (:class:`~.faithfulness.truth.EmojiTruth`).
The explanation catches an object when a word of its phrase is flagged
(:func:`~bcosdiff.explain.tokens.flag_words`: its peer ratio is below ``flag_ratio``) or
misbound (:mod:`bcosdiff.explain.binding`: its phrase's stray share is above
``stray_limit``). Both are continuous scores per object, so each also gets an AUROC without a
threshold:

* ``stray`` — the phrase's stray share (high: the phrase painted another object);
* ``weakest`` — the lowest peer ratio of its phrase's words under the model's flag signal
  (low: a word left little trace). Words the model never saw in training are left out: the
  explanation reports them as unknown, not as findings (``Explanation.findings``).

Calibration (:func:`calibrate_binding`) chooses both limits on prompts of one data seed.
The flag ratio flags at most 1 % of the objects drawn as asked (the ``floor(0.01 n)``-th
smallest of their phrases' lowest peer ratios), the false-positive budget of the
single-object calibration of :mod:`.flags`, which on prompts of several objects flags far
more words that are shown. Given it, the stray limit is the one whose combined rule (flagged
or misbound) has the highest true-positive rate with a false-positive rate of at most
``max_fpr`` (ties: the lower false-positive rate, then the higher limit). The flag ratio is
not chosen for the true-positive rate: missed objects of a two-object prompt keep their
words' traces (their ratios are those of drawn objects), and a ratio chosen for them would
be as good as any. The rates are then measured on prompts of another data seed, so no number
is tuned on the prompts it is reported on.

Regeneration (:func:`regeneration_success`) asks how often the image kept by
``--regenerate N`` shows both objects as asked, against the first seed alone. Sampling
``N + 1`` seeds without a detector and keeping any one of them succeeds as often as the first
seed does, so the first seed's rate is also plain reseeding at equal cost.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import BcosdiffError
from ..explain.binding import phrase_stray
from ..explain.registry import method_class, word_map_methods
from ..explain.tokens import peer_ratios
from ..modeldir import atomic_write
from ..service import default_method, explain_prompt, kept_attempt
from .binding_report import (
    BindingCalibration,
    BindingRates,
    BindingReport,
    RegenerationSuccess,
    RuleRates,
    binding_markdown,
)
from .faithfulness.metrics import auroc
from .faithfulness.scoring import align
from .faithfulness.truth import ShapesTruth
from .flags import threshold_at_quantile

__all__ = [
    "BindingReport",
    "ObjectRecord",
    "PromptRecord",
    "binding_prompts",
    "binding_truth",
    "binding_rates",
    "calibrate_binding",
    "binding_markdown",
    "explain_and_check",
    "regeneration_success",
    "binding_study",
    "load_records",
    "read_study",
    "save_study",
    "study_settings",
]


@dataclass(frozen=True)
class ObjectRecord:
    """One asked object of one explained image."""

    missed: bool  # not drawn as asked (wrong colour, wrong shape, or absent)
    stray: float  # its phrase's stray share
    weakest: float  # lowest peer ratio of its phrase's words

    def caught(self, flag_ratio: float, stray_limit: float) -> bool:
        return self.weakest < flag_ratio or self.stray > stray_limit


@dataclass(frozen=True)
class PromptRecord:
    """One explained image: its objects, and the lowest peer ratio of its content words in
    no phrase (template words such as "poster", which the flag rule may flag too)."""

    prompt: int
    seed: int
    objects: tuple[ObjectRecord, ...]
    rest_weakest: float = math.inf

    @property
    def right(self) -> bool:
        return not any(o.missed for o in self.objects)

    def finding(self, flag_ratio: float, stray_limit: float) -> bool:
        """Whether the explanation reports a flagged or misbound word under the limits."""
        caught = any(o.caught(flag_ratio, stray_limit) for o in self.objects)
        return caught or self.rest_weakest < flag_ratio

    def to_dict(self) -> dict:
        return asdict(self)


def binding_truth(data: str, size: int, seed: int):
    """The ground truth of two-object prompts of data seed ``seed``: ``data`` is "shapes"
    (held-out shapes prompts at ``size`` px) or an emoji import (``bcosdiff data emoji``;
    held-out two-emoji scene prompts, read by retrieval among the real emoji)."""
    if data == "shapes":
        return ShapesTruth(size, seed, two_object_share=1.0)
    from pathlib import Path

    from .faithfulness.truth import EmojiTruth

    return EmojiTruth.from_import(Path(data), seed, two_object_share=1.0)


def binding_prompts(truth, count: int) -> list[int]:
    """The indices of the first ``count`` prompts of ``truth`` that ask for two distinct
    objects (shapes: distinct colours and shapes; emoji: distinct concepts)."""
    chosen, index = [], 0
    while len(chosen) < count:
        if truth.two_distinct(truth.prompt(index)):
            chosen.append(index)
        index += 1
    return chosen


def explain_and_check(
    pipe,
    truth,
    index: int,
    seed: int,
    *,
    steps: int = 25,
    guidance: float | None = None,
    method: str = "bcos",
) -> PromptRecord:
    """Explain prompt ``index`` of ``truth`` (a :class:`ShapesTruth` or an
    :class:`~.faithfulness.truth.EmojiTruth`) sampled with ``seed``, and score its objects."""
    prompt = truth.prompt(index)
    exp = explain_prompt(
        pipe, prompt.caption, steps=steps, seed=seed, guidance=guidance, method=method
    )
    found = truth.read(np.asarray(exp.image), prompt)
    texts = [w.text for w in exp.words]
    ratios = {}
    if exp.relevance is not None:
        # A flagged word the model never saw in training is reported as unknown, not as a
        # finding (Explanation.findings): it catches nothing here either.
        unknown = set(exp.unknown_words)
        by_word = {id(w): r for w, r in peer_ratios(exp.words, exp.flag_signal, exp.word_roles)}
        ratios = {
            i: by_word[id(w)]
            for i, w in enumerate(exp.words)
            if id(w) in by_word and w.text.lower() not in unknown
        }
    _, _, placed = exp.binding
    positions = align(texts, prompt.words)
    objects, in_phrases = [], set()
    for phrase in exp.phrases:  # the phrases the explanation's findings read
        in_phrases.update(phrase.words)
        k = positions[phrase.noun]
        asked = None if k is None else prompt.word_objects[k]
        if asked is None:
            continue
        objects.append(
            ObjectRecord(
                missed=found[asked] is None or not found[asked].shown,
                stray=phrase_stray(phrase, placed)[0],
                weakest=min((ratios.get(i, math.inf) for i in phrase.words), default=math.inf),
            )
        )
    rest = min((r for i, r in ratios.items() if i not in in_phrases), default=math.inf)
    return PromptRecord(index, seed, tuple(objects), rest)


def binding_rates(
    records: Iterable[PromptRecord], flag_ratio: float, stray_limit: float
) -> BindingRates:
    """Per asked object: true- and false-positive rates of the flag rule, of the binding rule
    and of both (flagged or misbound), and the AUROC of each continuous score."""
    objects = [o for r in records for o in r.objects]
    missed = [o.missed for o in objects]

    def rates(caught: list[bool]) -> RuleRates:
        pos = [c for c, m in zip(caught, missed, strict=True) if m]
        neg = [c for c, m in zip(caught, missed, strict=True) if not m]
        return RuleRates(
            tpr=sum(pos) / len(pos) if pos else math.nan,
            fpr=sum(neg) / len(neg) if neg else math.nan,
        )

    return BindingRates(
        objects=len(objects),
        missed=sum(missed),
        flag_ratio=flag_ratio,
        stray_limit=stray_limit,
        flagged=rates([o.weakest < flag_ratio for o in objects]),
        misbound=rates([o.stray > stray_limit for o in objects]),
        either=rates([o.caught(flag_ratio, stray_limit) for o in objects]),
        auroc_stray=auroc([o.stray for o in objects], missed, higher=True),
        auroc_weakest=auroc([o.weakest for o in objects], missed),
    )


def calibrate_binding(
    records: Iterable[PromptRecord], max_fpr: float = 0.15, flag_quantile: float = 0.01
) -> tuple[float, float]:
    """``(flag_ratio, stray_limit)`` of the module docstring, chosen on ``records``: the flag
    ratio flags at most ``flag_quantile`` of the objects drawn as asked (their phrases'
    lowest peer ratios, :func:`~bcosdiff.evaluation.flags.threshold_at_quantile`); the stray
    limit then gives the combined rule its highest true-positive rate within ``max_fpr``."""
    objects = [o for r in records for o in r.objects]
    missed = np.array([o.missed for o in objects])
    if missed.all() or not missed.any():
        raise ValueError("calibration needs both missed and drawn objects")
    weakest = np.array([o.weakest for o in objects])
    stray = np.array([o.stray for o in objects])
    ratio = threshold_at_quantile([float(w) for w in weakest[~missed]], flag_quantile)
    ratio = ratio if math.isfinite(ratio) else 0.0
    limits = np.concatenate([np.unique(stray), [1.0]])  # misbound above each value
    caught = (stray[None, :] > limits[:, None]) | (weakest < ratio)[None, :]  # (limits, objects)
    tpr, fpr = caught[:, missed].mean(1), caught[:, ~missed].mean(1)
    allowed = np.flatnonzero(fpr <= max_fpr)
    if not len(allowed):
        raise ValueError(
            f"the flag ratio alone exceeds the false-positive budget {max_fpr:g}: "
            "raise --max-fpr or lower the flag quantile"
        )
    best = max(allowed, key=lambda j: (tpr[j], -fpr[j], limits[j]))
    return float(ratio), float(limits[best])


def regeneration_success(
    pipe,
    truth,
    first: list[PromptRecord],
    budgets: Iterable[int] = (3, 5),
    *,
    flag_ratio: float,
    stray_limit: float,
    steps: int = 25,
    guidance: float | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> RegenerationSuccess:
    """Share of prompts whose kept image shows both objects as asked: the first seed alone,
    and ``--regenerate N`` for each budget (the policy of
    :func:`bcosdiff.service.explain_request`: seeds ``s, s + 1, …`` until one has no
    finding under the limits; else the attempt with the fewest findings, counted here per
    object, the earliest among equals). ``first`` are the records of the first seed; later
    seeds are explained only while the policy needs them. Also the mean number of images
    sampled per prompt."""

    def finding(record: PromptRecord) -> bool:
        return record.finding(flag_ratio, stray_limit)

    def count(record: PromptRecord) -> int:
        caught = sum(o.caught(flag_ratio, stray_limit) for o in record.objects)
        return caught + (record.rest_weakest < flag_ratio)

    budgets = sorted(budgets)
    most = budgets[-1] if budgets else 0
    kept = {n: 0 for n in budgets}
    sampled = {n: 0 for n in budgets}
    for record in progress(first) if progress else first:
        attempts = [record]
        while finding(attempts[-1]) and len(attempts) <= most:
            seed = record.seed + len(attempts)
            attempts.append(
                explain_and_check(pipe, truth, record.prompt, seed, steps=steps, guidance=guidance)
            )
        for n in budgets:
            tried = attempts[: n + 1]
            # Stopped at the first attempt without a finding: every attempt up to it sampled.
            clean = [i for i, a in enumerate(tried) if not finding(a)]
            chosen = kept_attempt([max(1, count(a)) if finding(a) else 0 for a in tried])
            kept[n] += tried[chosen].right
            sampled[n] += clean[0] + 1 if clean else len(tried)
    count = max(len(first), 1)
    return RegenerationSuccess(
        prompts=len(first),
        first_seed=sum(r.right for r in first) / count,
        regenerate={n: kept[n] / count for n in budgets},
        images_per_prompt={n: sampled[n] / count for n in budgets},
    )


def binding_study(
    pipe,
    *,
    method: str,
    data: str = "shapes",
    prompts: int = 60,
    seed: int = 1,
    calibration_prompts: int = 60,
    calibration_seed: int = 0,
    max_fpr: float = 0.15,
    budgets: Iterable[int] = (3, 5),
    steps: int = 25,
    guidance: float | None = None,
    progress: Callable[[Iterable, str], Iterable] | None = None,
    on_progress: Callable[[BindingReport, dict], None] | None = None,
    saved: tuple[BindingReport, dict] | None = None,
) -> tuple[BindingReport, dict]:
    """The whole study behind ``bcosdiff eval binding``: calibrate the flag ratio and stray
    limit on ``calibration_prompts`` prompts of ``calibration_seed``
    (:func:`calibrate_binding`), measure the rates on ``prompts`` prompts of ``seed`` under
    them, and (for a method that flags words) the success of ``--regenerate N`` for each
    budget. Returns ``(report, records)``. ``on_progress(report, records)`` is called with
    what is known so far after every explained prompt and every stage, so a long study can
    be saved as it goes. ``saved`` is ``(report, records)`` as an earlier study saved them
    (``records`` as :meth:`PromptRecord.to_dict` rows per stage): the prompts it explained
    are reused if it was made with the same settings (:func:`study_settings`), else a
    ValueError says which differ. So a study cut short resumes at the prompt it stopped at,
    and another false-positive budget needs no new images. ``pipe.explain_settings``
    takes the calibrated flag ratio and stray limit. Methods with one map for the
    whole image (``maps_words = False``) are refused: no word can be placed on an object."""
    if not getattr(method_class(method), "maps_words", True):
        raise BcosdiffError(
            f"{method!r} gives one map for the whole image, and binding needs a map per word; "
            f"methods with one: {', '.join(word_map_methods())}"
        )
    guidance = pipe.guidance_scale(guidance)
    settings = study_settings(
        pipe,
        method=method,
        data=str(data),
        prompts=prompts,
        seed=seed,
        calibration_prompts=calibration_prompts,
        calibration_seed=calibration_seed,
        steps=steps,
        guidance=guidance,
    )
    stages = StudyStages(
        pipe,
        method,
        steps,
        guidance,
        BindingReport(settings=settings),
        _saved_records(settings, saved),
    )
    stages.progress, stages.on_progress = progress, on_progress
    size = pipe.sample_size
    stages.explained(
        binding_truth(str(data), size, calibration_seed), calibration_prompts, "calibration"
    )
    ratio, limit = calibrate_binding(stages.records["calibration"], max_fpr)
    stages.report.calibration = BindingCalibration(
        prompts=calibration_prompts,
        seed=calibration_seed,
        max_fpr=max_fpr,
        flag_ratio=ratio,
        stray_limit=limit,
        rates=binding_rates(stages.records["calibration"], ratio, limit),
    )
    stages.saving()
    # The measured prompts are explained under the calibrated rule.
    pipe.explain_settings = replace(pipe.explain_settings, flag_ratio=ratio, stray_limit=limit)
    truth = binding_truth(str(data), size, seed)
    stages.explained(truth, prompts, "measured")
    stages.report.test = binding_rates(stages.records["measured"], ratio, limit)
    budgets = sorted(set(budgets) - {0})
    if budgets and method == default_method(pipe):
        stages.saving()
        stages.report.regeneration = regeneration_success(
            pipe,
            truth,
            stages.records["measured"],
            budgets,
            flag_ratio=ratio,
            stray_limit=limit,
            steps=steps,
            guidance=guidance,
            progress=(lambda items: progress(items, "regenerating")) if progress else None,
        )
    stages.saving()
    return stages.report, stages.records


# Settings that only say how many prompts a stage explains: each stage's prompts are the
# first N of a fixed sequence, so a study with more reuses the saved ones and goes on.
PROMPT_COUNTS = frozenset(("prompts", "calibration_prompts"))


def reusable_records(settings: dict, earlier: dict, rows: dict) -> dict[str, list[PromptRecord]]:
    """The saved records ``rows`` of a study made with the settings ``earlier``, for a study
    with ``settings``: they must agree on everything but the prompt counts, and those may
    only grow (a larger study goes on after the saved prompts; a smaller one would save over
    them). ValueError otherwise."""
    differ = sorted(
        k for k, v in settings.items() if k not in PROMPT_COUNTS and earlier.get(k) != v
    )
    if differ:
        raise ValueError(f"the saved study was made with other {', '.join(differ)}")
    fewer = sorted(k for k in PROMPT_COUNTS & settings.keys() if settings[k] < earlier.get(k, 0))
    if fewer:
        raise ValueError(
            f"the saved study has more {', '.join(fewer)} than asked; its records would be "
            "lost (ask for at least as many, or use another --out)"
        )
    return load_records(rows)


def _saved_records(settings: dict, saved: tuple[BindingReport, dict] | None) -> dict:
    """The records of an earlier study made with the same settings (none without one)."""
    if saved is None:
        return {}
    earlier = {"data": "shapes", **saved[0].settings}  # studies saved before emoji scenes
    return reusable_records(settings, earlier, saved[1])


@dataclass
class StudyStages:
    """The explained prompts of a binding study, stage by stage, reported as they come."""

    pipe: object
    method: str
    steps: int
    guidance: float
    report: object  # the study's report (BindingReport, PhrasingReport), saved as it grows
    done: dict  # records of an earlier run of the same study, by stage
    records: dict = field(default_factory=dict)
    progress: Callable[[Iterable, str], Iterable] | None = None
    on_progress: Callable[[object, dict], None] | None = None

    def saving(self) -> None:
        if self.on_progress:
            self.on_progress(self.report, self.records)

    def explained(self, truth, count: int, label: str) -> None:
        """Explain the first ``count`` binding prompts of ``truth`` as the stage ``label``: its
        records are the saved ones while they follow the stage's prompts in order, then the
        rest, each reported as explained."""
        chosen = binding_prompts(truth, count)
        kept = []
        for record, prompt in zip(self.done.get(label, []), chosen, strict=False):
            if record.prompt != prompt:
                break
            kept.append(record)
        self.records[label] = kept
        todo = chosen[len(kept) :]
        for k in self.progress(todo, label) if self.progress and todo else todo:
            kept.append(
                explain_and_check(
                    self.pipe,
                    truth,
                    k,
                    k,
                    steps=self.steps,
                    guidance=self.guidance,
                    method=self.method,
                )
            )
            self.saving()


def study_settings(
    pipe,
    *,
    method: str,
    data: str,
    prompts: int,
    seed: int,
    calibration_prompts: int,
    calibration_seed: int,
    steps: int,
    guidance: float,
) -> dict:
    """What a study's records depend on (a saved report's keys): records saved under the
    same settings can be reused (``binding_study(done=…)``)."""
    return {
        "model": pipe.name,
        "method": method,
        "data": data,
        "steps": steps,
        "guidance": guidance,
        "prompts": prompts,
        "seed": seed,
        "calibration_prompts": calibration_prompts,
        "calibration_seed": calibration_seed,
    }


def load_records(rows: dict) -> dict[str, list[PromptRecord]]:
    """Records per stage from a saved ``records.json`` (:meth:`PromptRecord.to_dict`);
    a malformed file raises ValueError."""
    try:
        return _records(rows)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed records ({exc!r})") from None


def write_study_files(out: Path, name: str, records: dict, report: dict, markdown: str) -> None:
    """Write a resumable study into the folder ``out``: ``records.json`` (the explained
    prompts per stage or phrasing), ``NAME.json`` (the report) and ``NAME.md``. Each file is
    replaced whole (:func:`~bcosdiff.modeldir.atomic_write`), the records first, so a run
    killed at any point leaves the last complete save and a report never names prompts that
    were not saved."""
    rows = {stage: [r.to_dict() for r in found] for stage, found in records.items()}
    texts = {
        "records.json": json.dumps(rows, indent=1) + "\n",
        f"{name}.json": json.dumps(report, indent=2) + "\n",
        f"{name}.md": markdown,
    }
    for file, text in texts.items():
        atomic_write(Path(out) / file, lambda tmp, text=text: tmp.write_text(text, "utf-8"))


def read_study_files(out: Path, name: str) -> tuple[dict, dict] | None:
    """``(report, records rows)`` as :func:`write_study_files` left them in ``out``; None
    when nothing was saved there. Malformed files raise ValueError, before any model work."""
    out = Path(out)
    try:
        report = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
        rows = json.loads((out / "records.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    load_records(rows)
    if not isinstance(report, dict):
        raise ValueError(f"{name}.json is not a report")
    return report, rows


def save_study(out: Path, report: BindingReport, records: dict[str, list[PromptRecord]]) -> None:
    """Write a study into the folder ``out`` (``records.json``, ``binding.json``,
    ``binding.md``; :func:`write_study_files`). ``binding_study(on_progress=…)`` can call it
    after every prompt."""
    write_study_files(out, "binding", records, report.to_dict(), binding_markdown(report))


def read_study(out: Path) -> tuple[BindingReport, dict] | None:
    """``(report, records rows)`` that :func:`save_study` left in ``out``, to pass to
    ``binding_study(saved=…)``; None when nothing was saved there. A file that is not a
    saved study raises ValueError."""
    saved = read_study_files(out, "binding")
    if saved is None:
        return None
    report, rows = saved
    return BindingReport.from_dict(report), rows


def _records(rows: dict) -> dict[str, list[PromptRecord]]:
    return {
        stage: [
            PromptRecord(
                r["prompt"],
                r["seed"],
                tuple(ObjectRecord(**o) for o in r["objects"]),
                r["rest_weakest"],
            )
            for r in found
        ]
        for stage, found in rows.items()
    }
