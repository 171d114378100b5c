"""The faithfulness results: one list of measures, turned into numbers, JSON and a table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from .metrics import auroc, mean, spearman
from .scoring import Tally

__all__ = ["MEASURES", "FaithfulnessResult", "faithfulness_markdown", "summarise"]


def _ratio(top: str, bottom: str) -> Callable[[Tally], float | None]:
    def compute(t: Tally) -> float | None:
        a, b = mean(t.values[top]), mean(t.values[bottom])
        return a / b if a and b else None

    return compute


def _auroc(score: str, missed: str) -> Callable[[Tally], float | None]:
    def compute(t: Tally) -> float | None:
        return auroc(t.values[score], t.values[missed]) if t.values[score] else None

    return compute


def _mean(name: str) -> Callable[[Tally], float | None]:
    return lambda t: mean(t.values[name])


def _pooled_deletion(t: Tally) -> float | None:
    pairs = t.values["deletion_pairs"]
    return spearman([a for a, _ in pairs], [b for _, b in pairs]) if pairs else None


@dataclass(frozen=True)
class Measure:
    key: str  # the name in faithfulness.json
    label: str  # the row of the table; "{key_words}" names the benchmark's key words
    compute: Callable[[Tally], float | None]
    count: str | None = None  # a count shown in parentheses (a key of COUNTS)
    style: str = "plain"  # "plain", "times" (a ratio) or "rows"


MEASURES = (
    Measure(
        "localisation_mass_single",
        "localisation mass, one object",
        _mean("mass_single"),
        "localised_words_single",
    ),
    Measure(
        "localisation_mass_two",
        "localisation mass, two objects",
        _mean("mass_two"),
        "localised_words_two",
    ),
    Measure(
        "pointing_single",
        "pointing game, one object",
        _mean("pointing_single"),
        "localised_words_single",
    ),
    Measure(
        "pointing_two", "pointing game, two objects", _mean("pointing_two"), "localised_words_two"
    ),
    Measure(
        "localisation_mass_key_words",
        "localisation mass, {key_words}, one object",
        _mean("mass_key"),
        "localised_key_words",
    ),
    Measure(
        "pointing_key_words",
        "pointing game, {key_words}, one object",
        _mean("pointing_key"),
        "localised_key_words",
    ),
    Measure(
        "token_specificity", "token specificity, mean share", _mean("specificity"), "specificity"
    ),
    Measure(
        "token_specificity_above_half",
        "token specificity, share > 0.5",
        lambda t: mean(v > 0.5 for v in t.values["specificity"]),
    ),
    Measure(
        "token_specificity_exact",
        "token specificity, both objects right",
        _mean("specificity_exact"),
        "specificity_images_exact",
    ),
    Measure("object_word_relevance", "mean relevance of object words", _mean("relevance_object")),
    Measure("filler_word_relevance", "mean relevance of filler words", _mean("relevance_filler")),
    Measure(
        "object_filler_ratio",
        "object-word / filler-word relevance",
        _ratio("relevance_object", "relevance_filler"),
        style="times",
    ),
    Measure(
        "failure_auroc_objects",
        "failure detection AUROC, objects",
        _auroc("object_score", "object_missed"),
        "objects",
    ),
    Measure(
        "failure_auroc_words",
        "failure detection AUROC, {key_words}",
        _auroc("word_score", "word_missed"),
    ),
    Measure(
        "object_filler_map_ratio",
        "object-word / filler-word map magnitude",
        _ratio("map_size_object", "map_size_filler"),
        style="times",
    ),
    Measure(
        "failure_auroc_objects_maps",
        "failure AUROC from map mass, objects",
        _auroc("object_score_maps", "object_missed"),
    ),
    Measure(
        "failure_auroc_words_maps",
        "failure AUROC from map mass, {key_words}",
        _auroc("word_score_maps", "word_missed"),
    ),
    Measure(
        "deletion_spearman_mean",
        "deletion Spearman ρ, mean per prompt",
        _mean("deletion_rho"),
        "deletion_prompts",
    ),
    Measure(
        "deletion_spearman_pooled",
        "deletion Spearman ρ, pooled",
        _pooled_deletion,
        "deletion_words",
    ),
    Measure("insertion_auc", "insertion AUC (higher is better)", _mean("insertion_auc")),
    Measure("deletion_auc", "deletion AUC (lower is better)", _mean("deletion_auc")),
    Measure("cost_model_rows", "cost: U-Net rows per image", _mean("model_rows"), style="rows"),
    Measure("cost_time_ratio", "cost: wall time / generation", _mean("time_ratio"), style="times"),
)
HIDDEN = {"object_word_relevance", "filler_word_relevance"}  # in the JSON, not the table

COUNTS: dict[str, Callable[[Tally], int]] = {
    "images_explained": lambda t: t.counts["images"],
    "localised_words_single": lambda t: len(t.values["pointing_single"]),
    "localised_words_two": lambda t: len(t.values["pointing_two"]),
    "localised_key_words": lambda t: len(t.values["pointing_key"]),
    "specificity_words": lambda t: len(t.values["specificity"]),
    "specificity_images": lambda t: t.counts["specificity_images"],
    "specificity_images_exact": lambda t: t.counts["specificity_images_exact"],
    "objects": lambda t: len(t.values["object_missed"]),
    "objects_missed": lambda t: sum(t.values["object_missed"]),
    "deletion_prompts": lambda t: len(t.values["deletion_rho"]),
    "deletion_words": lambda t: len(t.values["deletion_pairs"]),
}


@dataclass
class FaithfulnessResult:
    method: str
    prompts: int
    metrics: dict[str, float | None]
    counts: dict[str, int]
    benchmark: str = "shapes"
    key_words: str = "colour/shape words"
    shown_only: bool = False  # only the images that show every asked object were explained

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(
    method: str, prompts: int, tally: Tally, truth, shown_only: bool = False
) -> FaithfulnessResult:
    return FaithfulnessResult(
        method,
        prompts,
        {m.key: m.compute(tally) for m in MEASURES},
        {name: count(tally) for name, count in COUNTS.items()},
        truth.name,
        truth.key_words_label,
        shown_only,
    )


def _cell(measure: Measure, result: FaithfulnessResult) -> str:
    value = result.metrics[measure.key]
    if value is None:
        text = "n/a"
    elif measure.style == "times":
        text = f"{value:.1f}×" if measure.key.startswith("object_filler") else f"{value:.2f}×"
    elif measure.style == "rows":
        text = f"{value:.0f}"
    else:
        text = f"{value:.3f}"
    if measure.count == "specificity":
        text += (
            f" ({result.counts['specificity_images']} images, "
            f"{result.counts['specificity_words']} words)"
        )
    elif measure.count is not None:
        text += f" ({result.counts[measure.count]})"
    return text


def faithfulness_markdown(results: list[FaithfulnessResult]) -> str:
    """One table: a row per measure, a column per method (counts in parentheses)."""
    lines = [
        "| measure | " + " | ".join(r.method for r in results) + " |",
        "| --- |" + " ---: |" * len(results),
    ]
    key_words = results[0].key_words if results else "key words"
    for measure in MEASURES:
        if measure.key in HIDDEN:
            continue
        cells = [_cell(measure, r) for r in results]
        lines.append(f"| {measure.label.format(key_words=key_words)} | " + " | ".join(cells) + " |")
    missed = results[0].counts["objects_missed"] if results else 0
    objects = results[0].counts["objects"] if results else 0
    reader = "pixel checker" if not results or results[0].benchmark == "shapes" else "retrieval"
    lines += [
        "",
        "Numbers in parentheses: scored words or objects; token specificity is measured on "
        "two-object images in which a region was found for each asked object.",
        f"Objects not drawn as asked ({reader}): {missed} of {objects}.",
    ]
    if results and results[0].shown_only:
        lines.append(
            f"Explained: the {results[0].counts['images_explained']} of "
            f"{results[0].prompts} images that show every asked object (--shown-only)."
        )
    return "\n".join(lines) + "\n"
