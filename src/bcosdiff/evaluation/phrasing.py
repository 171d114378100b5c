"""Do the diagnostics hold on phrasing the model never saw? The binding study
(:mod:`bcosdiff.evaluation.binding`) on the same two-object scenes captioned in several
phrasings.

Every phrasing captions the same objects (held-out scenes of one data seed with two distinct
objects: shapes of distinct colours and shapes, or two distinct emoji), so the phrasing is
the only thing that changes between them: prompt ``k`` of every phrasing asks for the same
two objects and is sampled with seed ``k``.
The flag ratio and stray limit are calibrated on the pooled records of some phrasings
(:func:`~bcosdiff.evaluation.binding.calibrate_binding`) and the rules are measured on each of
the others separately, so a diagnostic that works only on the phrasings it was tuned on shows
up as a phrasing with a low true-positive or a high false-positive rate.

:data:`PHRASINGS` holds the training captions' own shape (``known``: "a red circle and a blue
square") and seven that no training caption has: lead-ins, joiners other than "and", a
numeral, trailing context, and size and other adjectives. On emoji scenes the same
phrasings name each emoji by its name; there "next to" is one of the training captions'
joiners (``bcosdiff.data.emoji_scenes``), so ``next-to`` is not unseen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.shapes import COLOURS, SHAPES, caption_words
from ..service import default_method
from .binding import (
    StudyStages,
    binding_prompts,
    binding_rates,
    binding_truth,
    calibrate_binding,
    read_study_files,
    regeneration_success,
    reusable_records,
    write_study_files,
)
from .binding_report import BindingRates, RegenerationSuccess
from .faithfulness.truth import EmojiTruth, ShapesTruth, TruthPrompt

__all__ = [
    "PHRASINGS",
    "PhrasedEmojiTruth",
    "PhrasedTruth",
    "Phrasing",
    "PhrasingReport",
    "get_phrasing",
    "phrasing_markdown",
    "phrasing_study",
    "read_phrasing_study",
    "save_phrasing_study",
]


@dataclass(frozen=True, kw_only=True)
class Phrasing:
    """One way to ask for two objects: ``template`` around the two object phrases joined by
    ``joiner``; each object phrase is ``article``, that object's ``adjectives`` (the first
    object's, then the second's) and the words that name it (a shape's colour and shape, an
    emoji's name). ``{noun}`` in the template stands for what the objects are ("shapes",
    "emoji")."""

    name: str
    template: str = "{}"
    joiner: str = "and"
    article: str = "a"
    adjectives: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    known: bool = False  # the shapes training captions use this shape

    def caption(
        self, names: Sequence[Sequence[str]], noun: str = "shapes", agree: bool = False
    ) -> tuple[str, list[str], list[int | None]]:
        """``(caption, words, object per word)`` for objects named by ``names`` (each a
        sequence of texts: a colour and a shape, or an emoji's name): the adjective and name
        words of object ``k``'s phrase describe object ``k``; every other word (articles,
        the joiner, the template's words) none.
        With ``agree`` the article "a" becomes "an" before a vowel (the shapes captions,
        which the ``known`` phrasing copies, keep "a" throughout)."""
        prefix, _, suffix = self.template.replace("{noun}", noun).partition("{}")
        parts: list[tuple[str, int | None]] = [(prefix.strip(), None)]
        for k, name in enumerate(names):
            if k:
                parts.append((self.joiner, None))
            described = [*self.adjectives[k % 2], *name]
            article = self.article
            if agree and article == "a" and described[0][:1].lower() in "aeiou":
                article = "an"
            parts.append((article, None))
            parts += [(w, k) for w in described]
        parts.append((suffix.strip(), None))
        parts = [(text, k) for text, k in parts if text]
        words, labels = [], []
        for text, k in parts:
            pieces = caption_words(text)
            words += pieces
            labels += [k] * len(pieces)
        return " ".join(text for text, _ in parts), words, labels


PHRASINGS: tuple[Phrasing, ...] = (
    Phrasing(name="known", known=True),
    Phrasing(name="picture-of", template="a picture of {}"),
    Phrasing(name="illustration-with", template="an illustration with {}"),
    Phrasing(name="beside", joiner="beside"),
    Phrasing(name="next-to", joiner="next to"),
    Phrasing(name="numeral", template="two {noun}: {}", article="one"),
    Phrasing(name="trailing", template="{} in the middle of the page"),
    Phrasing(name="adjectives", adjectives=(("big", "bright"), ("small", "plain"))),
)
DEFAULT_CALIBRATION = ("known", "picture-of", "beside")


def get_phrasing(name: str) -> Phrasing:
    for phrasing in PHRASINGS:
        if phrasing.name == name:
            return phrasing
    raise KeyError(f"no phrasing {name!r}; known: {', '.join(p.name for p in PHRASINGS)}")


class PhrasedTruth:
    """The ground truth of :class:`~.faithfulness.truth.ShapesTruth`'s two-object scenes of
    data seed ``seed``, captioned in ``phrasing``."""

    name = "shapes"
    key_words_label = "colour/shape words"

    def __init__(self, size: int, seed: int, phrasing: Phrasing):
        self.scenes = ShapesTruth(size, seed, two_object_share=1.0)
        self.phrasing = phrasing

    def prompt(self, index: int) -> TruthPrompt:
        sample = self.scenes.prompt(index).sample
        names = [(obj.colour, obj.shape) for obj in sample.objects]
        caption, words, labels = self.phrasing.caption(names)
        keys = [
            j
            for j, (w, k) in enumerate(zip(words, labels, strict=True))
            if k is not None and w.lower() in (*COLOURS, *SHAPES)
        ]
        return TruthPrompt(caption, words, labels, len(sample.objects), keys, sample)

    def two_distinct(self, prompt: TruthPrompt) -> bool:
        return self.scenes.two_distinct(prompt)

    def read(self, image, prompt: TruthPrompt):
        return self.scenes.read(image, prompt)


class PhrasedEmojiTruth:
    """The two-emoji scenes of an :class:`~.faithfulness.truth.EmojiTruth` (made with
    ``two_object_share=1``), each emoji named by its name in ``phrasing``; the name's words
    are its key words, read by the same retrieval."""

    name = "emoji"
    key_words_label = "emoji name words"

    def __init__(self, scenes: EmojiTruth, phrasing: Phrasing):
        self.scenes = scenes
        self.phrasing = phrasing

    def prompt(self, index: int) -> TruthPrompt:
        sample = self.scenes.prompt(index).sample
        names = [(concept.name,) for concept in sample.concepts]
        caption, words, labels = self.phrasing.caption(names, noun="emoji", agree=True)
        keys = []  # the name's words: the last ones of each object's phrase
        for k, (name,) in enumerate(names):
            keys += [j for j, label in enumerate(labels) if label == k][-len(caption_words(name)) :]
        keys.sort()
        return TruthPrompt(caption, words, labels, len(sample.concepts), keys, sample)

    def two_distinct(self, prompt: TruthPrompt) -> bool:
        return self.scenes.two_distinct(prompt)

    def read(self, image, prompt: TruthPrompt):
        return self.scenes.read(image, prompt)


def phrased_truths(data: str, size: int, seed: int, names: Iterable[str]) -> dict:
    """The ground truth of each named phrasing over the same two-object scenes of data seed
    ``seed``: ``data`` is "shapes" (at ``size`` px) or an emoji import (``bcosdiff data
    emoji``), whose recogniser is loaded once for all phrasings."""
    if data == "shapes":
        return {n: PhrasedTruth(size, seed, get_phrasing(n)) for n in names}
    scenes = binding_truth(data, size, seed)
    return {n: PhrasedEmojiTruth(scenes, get_phrasing(n)) for n in names}


@dataclass(kw_only=True)
class PhrasingReport:
    """A phrasing study: ``settings`` (what its records depend on), the limits calibrated on
    the pooled calibration phrasings, the rules' rates per phrasing (calibration phrasings
    included, marked by ``settings["calibrate"]``), pooled over the measured phrasings, and
    the success of ``--regenerate N`` per phrasing."""

    settings: dict
    examples: dict[str, str] = field(default_factory=dict)  # one caption per phrasing
    flag_ratio: float | None = None
    stray_limit: float | None = None
    rates: dict[str, BindingRates] = field(default_factory=dict)
    measured_pooled: BindingRates | None = None
    regeneration: dict[str, RegenerationSuccess] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            **self.settings,
            "examples": self.examples,
            "flag_ratio": self.flag_ratio,
            "stray_limit": self.stray_limit,
            "rates": {name: asdict(r) for name, r in self.rates.items()},
            "measured_pooled": asdict(self.measured_pooled) if self.measured_pooled else None,
            "regeneration": {name: r.to_dict() for name, r in self.regeneration.items()},
        }


def phrasing_study(
    pipe,
    *,
    method: str,
    prompts: int = 20,
    seed: int = 1,
    calibrate: Iterable[str] = DEFAULT_CALIBRATION,
    measure: Iterable[str] | None = None,
    max_fpr: float = 0.15,
    budgets: Iterable[int] = (3,),
    steps: int = 25,
    guidance: float | None = None,
    data: str = "shapes",
    progress: Callable[[Iterable, str], Iterable] | None = None,
    on_progress: Callable[[PhrasingReport, dict], None] | None = None,
    saved: tuple[dict, dict] | None = None,
) -> tuple[PhrasingReport, dict]:
    """Explain ``prompts`` two-object scenes (``data``: "shapes" or an emoji import) of data
    seed ``seed`` in every phrasing named in
    ``calibrate`` and ``measure`` (default: all others), calibrate the limits on the pooled
    ``calibrate`` records within ``max_fpr``, and measure the rules on each phrasing. With
    the model's own method, also the success of ``--regenerate N`` per phrasing for each
    budget. ``saved`` is ``(settings, record rows)`` of an earlier study
    (:func:`read_phrasing_study`): its prompts are reused if it was made with the same
    settings, else a ValueError says which differ. Returns ``(report, records by
    phrasing)``."""
    calibrate = [get_phrasing(n).name for n in calibrate]
    measure = [
        get_phrasing(n).name
        for n in (measure if measure is not None else (p.name for p in PHRASINGS))
        if n not in calibrate
    ]
    if not calibrate or not measure:
        raise ValueError("need at least one phrasing to calibrate on and one to measure")
    guidance = pipe.guidance_scale(guidance)
    settings = {
        "model": pipe.name,
        "method": method,
        "steps": steps,
        "guidance": guidance,
        "prompts": prompts,
        "seed": seed,
        "calibrate": calibrate,
        "measure": measure,
    }
    if data != "shapes":  # absent for shapes, as in the studies saved before emoji scenes
        settings["data"] = str(data)
    done = {}
    if saved is not None:
        done = reusable_records(settings, saved[0], saved[1])
    stages = StudyStages(pipe, method, steps, guidance, PhrasingReport(settings=settings), done)
    stages.progress, stages.on_progress = progress, on_progress
    truths = phrased_truths(data, pipe.sample_size, seed, calibrate + measure)
    for name in calibrate + measure:
        stages.report.examples[name] = (
            truths[name].prompt(binding_prompts(truths[name], 1)[0]).caption
        )
        stages.explained(truths[name], prompts, name)
    pooled = [r for n in calibrate for r in stages.records[n]]
    ratio, limit = calibrate_binding(pooled, max_fpr)
    report = stages.report
    report.flag_ratio, report.stray_limit = ratio, limit
    report.rates = {n: binding_rates(stages.records[n], ratio, limit) for n in calibrate + measure}
    measured = [r for n in measure for r in stages.records[n]]
    report.measured_pooled = binding_rates(measured, ratio, limit)
    budgets = sorted(set(budgets) - {0})
    if budgets and method == default_method(pipe):
        stages.saving()
        for name in calibrate + measure:
            report.regeneration[name] = regeneration_success(
                pipe,
                truths[name],
                stages.records[name],
                budgets,
                flag_ratio=ratio,
                stray_limit=limit,
                steps=steps,
                guidance=guidance,
                progress=(lambda items, n=name: progress(items, f"regenerating {n}"))
                if progress
                else None,
            )
            stages.saving()
    stages.saving()
    return report, stages.records


def phrasing_markdown(report: PhrasingReport) -> str:
    """The study as Markdown: one row per phrasing (an example caption, objects missed, and
    the true- and false-positive rates of each rule), the measured phrasings pooled, and the
    regeneration success per phrasing."""
    s = report.settings
    if report.flag_ratio is None:
        return f"{s['model']} ({s['method']}): the phrasings are still being explained\n"
    scenes = "two-emoji" if "data" in s else "two-object"
    lines = [
        f"{s['model']} ({s['method']}), {s['steps']} steps, guidance {s['guidance']:g}; "
        f"{s['prompts']} {scenes} scenes of data seed {s['seed']} in each phrasing; flag "
        f"ratio {report.flag_ratio:.3g} and stray limit {report.stray_limit:.3f} calibrated "
        f"on {', '.join(s['calibrate'])} (pooled)",
        "",
        "| phrasing | example | missed of asked | either TPR | either FPR | flagged TPR | "
        "flagged FPR | misbound TPR | misbound FPR | stray share AUROC |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def row(label: str, caption: str, r: BindingRates) -> str:
        return (
            f"| {label} | {caption} | {r.missed} of {r.objects} | {r.either.tpr:.2f} | "
            f"{r.either.fpr:.2f} | {r.flagged.tpr:.2f} | {r.flagged.fpr:.2f} | "
            f"{r.misbound.tpr:.2f} | {r.misbound.fpr:.2f} | "
            f"{'–' if r.auroc_stray is None else format(r.auroc_stray, '.3f')} |"
        )

    for name, rates in report.rates.items():
        label = f"{name} (calibration)" if name in s["calibrate"] else name
        lines.append(row(label, f'"{report.examples.get(name, "")}"', rates))
    if report.measured_pooled:
        lines.append(row("**measured, pooled**", "", report.measured_pooled))
    if report.regeneration:
        budgets = next(iter(report.regeneration.values())).regenerate
        lines += [
            "",
            "| phrasing | both right, first seed | "
            + " | ".join(f"--regenerate {n}" for n in budgets)
            + " |",
            "| --- | ---: |" + " ---: |" * len(budgets),
        ]
        for name, regen in report.regeneration.items():
            cells = " | ".join(f"{v:.2f}" for v in regen.regenerate.values())
            lines.append(f"| {name} | {regen.first_seed:.2f} | {cells} |")
    return "\n".join(lines) + "\n"


def save_phrasing_study(out: Path, report: PhrasingReport, records: dict) -> None:
    """Write ``records.json`` (the explained prompts per phrasing), ``phrasing.json`` and
    ``phrasing.md`` into the folder ``out``, each replaced whole, the records first."""
    write_study_files(out, "phrasing", records, report.to_dict(), phrasing_markdown(report))


def read_phrasing_study(out: Path) -> tuple[dict, dict] | None:
    """``(settings, record rows)`` that :func:`save_phrasing_study` left in ``out``, for
    ``phrasing_study(saved=…)``; None when nothing was saved there. A file that is not a
    saved study raises ValueError."""
    return read_study_files(out, "phrasing")
