"""The results of the binding study (:mod:`bcosdiff.evaluation.binding`) as typed records,
their JSON form (``binding.json``) and their Markdown (``binding.md``, what ``bcosdiff eval
binding`` prints).

A study fills its report stage by stage: the settings first, then the calibration, then the
rates on the measured prompts, then (for the model's own method) the success of
``--regenerate N``. A report saved part way has the later fields None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = [
    "BindingCalibration",
    "BindingRates",
    "BindingReport",
    "RegenerationSuccess",
    "RuleRates",
    "binding_markdown",
]


@dataclass(frozen=True)
class RuleRates:
    """How one rule catches the asked objects not drawn as asked: the share of those it
    catches (``tpr``) and the share of the objects drawn as asked that it catches too
    (``fpr``); NaN where a kind has no object."""

    tpr: float
    fpr: float


@dataclass(frozen=True, kw_only=True)
class BindingRates:
    """The rules' rates on a set of prompts under one flag ratio and stray limit: a word
    flagged (``flagged``), a word misbound (``misbound``), either (``either``); and the AUROC
    of each continuous score (None where only one kind of object occurs)."""

    objects: int
    missed: int
    flag_ratio: float
    stray_limit: float
    flagged: RuleRates
    misbound: RuleRates
    either: RuleRates
    auroc_stray: float | None
    auroc_weakest: float | None

    @classmethod
    def from_dict(cls, data: dict) -> BindingRates:
        rules = {k: RuleRates(**data[k]) for k in ("flagged", "misbound", "either")}
        return cls(**{**data, **rules})


@dataclass(frozen=True, kw_only=True)
class BindingCalibration:
    """The flag ratio and stray limit chosen on ``prompts`` prompts of data seed ``seed``
    within the false-positive budget ``max_fpr``, and the rates they give there."""

    prompts: int
    seed: int
    max_fpr: float
    flag_ratio: float
    stray_limit: float
    rates: BindingRates

    @classmethod
    def from_dict(cls, data: dict) -> BindingCalibration:
        return cls(**{**data, "rates": BindingRates.from_dict(data["rates"])})


@dataclass(frozen=True, kw_only=True)
class RegenerationSuccess:
    """Share of ``prompts`` whose kept image shows both objects as asked: the first seed
    alone (``first_seed``) and under ``--regenerate N`` (``regenerate[N]``), with the mean
    number of images sampled per prompt (``images_per_prompt[N]``)."""

    prompts: int
    first_seed: float
    regenerate: dict[int, float]
    images_per_prompt: dict[int, float]

    def to_dict(self) -> dict:
        return {
            "prompts": self.prompts,
            "first_seed": self.first_seed,
            **{f"regenerate_{n}": v for n, v in self.regenerate.items()},
            **{f"images_per_prompt_{n}": v for n, v in self.images_per_prompt.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> RegenerationSuccess:
        def by_budget(prefix: str) -> dict[int, float]:
            found = {int(k[len(prefix) :]): v for k, v in data.items() if k.startswith(prefix)}
            return dict(sorted(found.items()))

        return cls(
            prompts=data["prompts"],
            first_seed=data["first_seed"],
            regenerate=by_budget("regenerate_"),
            images_per_prompt=by_budget("images_per_prompt_"),
        )


@dataclass(kw_only=True)
class BindingReport:
    """One study: ``settings`` (what its records depend on:
    :func:`~bcosdiff.evaluation.binding.study_settings`) and what it has measured so far."""

    settings: dict
    calibration: BindingCalibration | None = None
    test: BindingRates | None = None
    regeneration: RegenerationSuccess | None = None

    def to_dict(self) -> dict:
        """The JSON form (``binding.json``): the settings' keys, then one key per stage
        measured."""
        out = dict(self.settings)
        if self.calibration is not None:
            out["calibration"] = asdict(self.calibration)
        if self.test is not None:
            out["test"] = asdict(self.test)
        if self.regeneration is not None:
            out["regeneration"] = self.regeneration.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> BindingReport:
        """A report as :meth:`to_dict` wrote it; a malformed one raises ValueError."""
        if not isinstance(data, dict):
            raise ValueError("not a report")
        try:
            stages = {
                "calibration": BindingCalibration.from_dict,
                "test": BindingRates.from_dict,
                "regeneration": RegenerationSuccess.from_dict,
            }
            parsed = {k: read(data[k]) for k, read in stages.items() if k in data}
            settings = {k: v for k, v in data.items() if k not in stages}
            return cls(settings=settings, **parsed)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"malformed report ({exc!r})") from None


def binding_markdown(report: BindingReport) -> str:
    """The report as Markdown tables (a report saved before the measured stage shows the
    calibration's rates; one saved before those, a line)."""
    s = report.settings
    data = "shapes prompts" if s.get("data", "shapes") == "shapes" else "emoji scenes"
    if report.calibration is None:
        return (
            f"{s['model']} ({s['method']}, {data}), {s['steps']} steps: the "
            f"{s['calibration_prompts']} calibration prompts are still being explained\n"
        )
    calibration = report.calibration
    rates = report.test or calibration.rates
    where = (
        f"measured on {s['prompts']} other prompts (data seed {s['seed']})"
        if report.test
        else "rates on the calibration prompts (the measured prompts are still to come)"
    )
    lines = [
        f"{s['model']} ({s['method']}, {data}), {s['steps']} steps, guidance "
        f"{s['guidance']:g}; flag ratio {rates.flag_ratio:.3g} and stray limit "
        f"{rates.stray_limit:.3f} calibrated on {calibration.prompts} prompts (data seed "
        f"{calibration.seed}, false-positive rate at most {calibration.max_fpr:g}); {where}: "
        f"{rates.objects} asked objects, {rates.missed} not drawn as asked",
        "",
        "| rule | true-positive rate | false-positive rate |",
        "| --- | ---: | ---: |",
    ]
    for rule, label in (
        (rates.flagged, "a word flagged"),
        (rates.misbound, "a word misbound"),
        (rates.either, "flagged or misbound"),
    ):
        lines.append(f"| {label} | {rule.tpr:.3f} | {rule.fpr:.3f} |")
    aurocs = [
        f"{label} {value:.3f}"
        for label, value in (("stray", rates.auroc_stray), ("weakest", rates.auroc_weakest))
        if value is not None
    ]
    lines += ["", f"AUROC of the continuous scores: {', '.join(aurocs) or 'n/a'}"]
    regen = report.regeneration
    if regen:
        lines += [
            "",
            "| kept image | both objects as asked | images sampled per prompt |",
            "| --- | ---: | ---: |",
            f"| first seed (= plain reseeding at any budget) | {regen.first_seed:.3f} | 1 |",
        ]
        for n, share in regen.regenerate.items():
            lines.append(f"| --regenerate {n} | {share:.3f} | {regen.images_per_prompt[n]:.2f} |")
    return "\n".join(lines) + "\n"
