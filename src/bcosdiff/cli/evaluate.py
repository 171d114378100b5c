"""``bcosdiff eval``: measure models and explanations against ground truth."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from ..errors import BcosdiffError
from .options import (
    DeviceOption,
    ExplanationMethodOption,
    GuidanceOption,
    MaxFprOption,
    ModelOption,
    ProgressOption,
    RegenerateBudgetsOption,
    SceneDataOption,
    StepsOption,
)
from .output import note, writing

app = typer.Typer(help="Measure models and explanations.", no_args_is_help=True)


def _run_saved_study(study: Callable, out: Path, save_study: Callable, saved, progress: bool):
    """Run a resumable two-object study (``study`` is the binding or phrasing study with its
    settings bound) and return its report: saved to ``out`` by ``save_study`` after every
    prompt and stage, resumed from ``saved`` (None: from the start), with progress bars when
    ``progress``. A saved study that does not fit these settings is one clear error."""
    from tqdm import tqdm

    def save(report, records: dict) -> None:
        with writing(out):
            save_study(out, report, records)

    bars = (lambda items, label: tqdm(items, desc=label, unit="prompt")) if progress else None
    try:
        report, _ = study(progress=bars, on_progress=save, saved=saved)
    except ValueError as exc:
        prefix = f"cannot resume from {out}: " if saved and "saved study" in str(exc) else ""
        raise BcosdiffError(prefix + str(exc)) from None
    return report


def _study_budgets(prompts: int, steps: int, max_fpr: float, regenerate, default) -> list[int]:
    """Check a two-object study's counts and return its sorted ``--regenerate`` budgets."""
    if prompts < 1 or steps < 1 or not 0 <= max_fpr <= 1:
        raise BcosdiffError("need prompts >= 1, steps >= 1 and 0 <= max-fpr <= 1")
    budgets = sorted(set(regenerate if regenerate is not None else default))
    if any(n < 0 for n in budgets):
        raise BcosdiffError("--regenerate budgets must be at least 0")
    return budgets


def _study_model(model: str | None, device: str | None, method: str | None, write: bool):
    """``(directory, pipeline, method)`` of a two-object study; ``--write`` stores limits
    calibrated with the model's own explanation method only."""
    from ..pipeline import load_pipeline, resolve_model
    from ..service import default_method

    directory = resolve_model(model)
    pipe = load_pipeline(directory, device)
    method = method or default_method(pipe)
    if write and method != default_method(pipe):
        raise BcosdiffError("--write stores the limits of the model's own method only")
    return directory, pipe, method


@app.command("flags")
def eval_flags(
    model: ModelOption = None,
    captions: Annotated[int, typer.Option(help="Single-object training captions.")] = 100,
    steps: StepsOption = 25,
    seed: Annotated[int, typer.Option(help="Data seed of the captions.")] = 0,
    quantile: Annotated[
        float, typer.Option(help="Share of shown words the threshold may flag.")
    ] = 0.01,
    signal: Annotated[
        str, typer.Option(help="Word score to flag on: relevance or colour_change.")
    ] = "relevance",
    write: Annotated[
        bool, typer.Option(help="Store the threshold and signal in the model's config.json.")
    ] = False,
    data: SceneDataOption = "shapes",
) -> None:
    """Calibrate the failure-detection threshold of a model on single-object training captions."""
    import json

    from ..evaluation.flags import calibrate_flag_ratio
    from ..modeldir import update_config_section
    from ..pipeline import load_pipeline, resolve_model

    if captions < 1 or steps < 1 or not 0 <= quantile < 1:
        raise BcosdiffError("need captions >= 1, steps >= 1 and 0 <= quantile < 1")
    directory = resolve_model(model)
    pipe = load_pipeline(directory)
    truth = None
    if data != "shapes":
        from ..evaluation.faithfulness import EmojiTruth

        truth = EmojiTruth.from_import(Path(data), seed, 0.0, held_out=False)
    try:
        calibration = calibrate_flag_ratio(
            pipe,
            captions=captions,
            steps=steps,
            seed=seed,
            quantile=quantile,
            signal=signal,
            truth=truth,
        )
    except ValueError as exc:
        raise BcosdiffError(str(exc)) from None
    typer.echo(json.dumps(calibration.to_dict(), indent=2))
    if write:
        with writing(directory):
            update_config_section(
                directory,
                "explain",
                flag_ratio=calibration.ratio,
                flag_ratio_source="eval flags",
                flag_signal=signal,
                calibration=calibration.to_dict(),
            )
        note(
            f"flag_ratio {calibration.ratio:.4g} ({signal}) written to {directory / 'config.json'}"
        )


@app.command("binding")
def eval_binding(
    model: ModelOption = None,
    method: ExplanationMethodOption = None,
    prompts: Annotated[int, typer.Option(help="Held-out two-object prompts measured.")] = 60,
    seed: Annotated[int, typer.Option(help="Data seed of the measured prompts.")] = 1,
    calibration_prompts: Annotated[
        int, typer.Option(help="Two-object prompts the stray limit is chosen on.")
    ] = 60,
    calibration_seed: Annotated[int, typer.Option(help="Their data seed.")] = 0,
    max_fpr: MaxFprOption = 0.15,
    regenerate: RegenerateBudgetsOption = None,
    steps: StepsOption = 25,
    guidance: GuidanceOption = None,
    write: Annotated[
        bool, typer.Option(help="Store the flag ratio and stray limit in config.json.")
    ] = False,
    data: SceneDataOption = "shapes",
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("eval-binding"),
    resume: Annotated[
        bool,
        typer.Option(
            help="Reuse the explained prompts saved in --out by a run with the same "
            "settings (or fewer prompts), and go on from the first prompt missing."
        ),
    ] = False,
    progress: ProgressOption = True,
    device: DeviceOption = None,
) -> None:
    """Calibrate the flag rule and the binding diagnostics together on two-object prompts,
    and measure how they catch the objects not drawn as asked."""

    from ..evaluation.binding import binding_markdown, binding_study, save_study
    from ..modeldir import update_config_section

    budgets = _study_budgets(min(prompts, calibration_prompts), steps, max_fpr, regenerate, [3, 5])
    directory, pipe, method = _study_model(model, device, method, write)
    saved = _saved_binding_study(out) if resume else None

    study = partial(
        binding_study,
        pipe,
        method=method,
        data=data,
        prompts=prompts,
        seed=seed,
        calibration_prompts=calibration_prompts,
        calibration_seed=calibration_seed,
        max_fpr=max_fpr,
        budgets=budgets,
        steps=steps,
        guidance=guidance,
    )
    report = _run_saved_study(study, out, save_study, saved, progress)
    ratio, limit = report.calibration.flag_ratio, report.calibration.stray_limit
    typer.echo(binding_markdown(report), nl=False)
    if write:
        with writing(directory):
            update_config_section(
                directory,
                "explain",
                drop=("phrasing_calibration",),
                flag_ratio=ratio,
                flag_ratio_source="eval binding",
                stray_limit=limit,
                binding_calibration=report.to_dict()["calibration"],
            )
        note(
            f"flag_ratio {ratio:.4g} and stray_limit {limit:.4g} written to "
            f"{directory / 'config.json'}"
        )


def _saved_binding_study(out: Path):
    """``(report, records)`` an earlier ``eval binding`` saved in ``out``, or None."""
    from ..evaluation.binding import read_study

    try:
        return read_study(out)
    except (OSError, ValueError) as exc:  # unreadable, not JSON, or not a saved study
        raise BcosdiffError(f"cannot resume from {out}: {exc}") from None


@app.command("phrasing")
def eval_phrasing(
    model: ModelOption = None,
    method: ExplanationMethodOption = None,
    prompts: Annotated[int, typer.Option(help="Two-object scenes per phrasing.")] = 20,
    seed: Annotated[int, typer.Option(help="Data seed of the scenes.")] = 1,
    calibrate: Annotated[
        list[str] | None,
        typer.Option(help="Phrasing the limits are calibrated on (repeatable)."),
    ] = None,
    measure: Annotated[
        list[str] | None,
        typer.Option(help="Phrasing measured (repeatable); default every other one."),
    ] = None,
    max_fpr: MaxFprOption = 0.15,
    regenerate: RegenerateBudgetsOption = None,
    steps: StepsOption = 25,
    guidance: GuidanceOption = None,
    write: Annotated[
        bool,
        typer.Option(help="Store the limits calibrated across phrasings in config.json."),
    ] = False,
    data: SceneDataOption = "shapes",
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("eval-phrasing"),
    resume: Annotated[
        bool,
        typer.Option(
            help="Reuse the explained prompts saved in --out by the same study (with "
            "--prompts larger, it goes on after them)."
        ),
    ] = False,
    progress: ProgressOption = True,
    device: DeviceOption = None,
) -> None:
    """The binding and flag study on the same two-object scenes in several phrasings the
    model never saw: calibrate on some, measure on each of the others."""

    from ..evaluation.phrasing import (
        DEFAULT_CALIBRATION,
        PHRASINGS,
        phrasing_markdown,
        phrasing_study,
        read_phrasing_study,
        save_phrasing_study,
    )

    names = [p.name for p in PHRASINGS]
    for name in (*(calibrate or ()), *(measure or ())):
        if name not in names:
            raise BcosdiffError(f"no phrasing {name!r}; known: {', '.join(names)}")
    budgets = _study_budgets(prompts, steps, max_fpr, regenerate, [3])
    directory, pipe, method = _study_model(model, device, method, write)
    saved = None
    if resume:
        try:
            saved = read_phrasing_study(out)
        except (OSError, ValueError) as exc:
            raise BcosdiffError(f"cannot resume from {out}: {exc}") from None

    study = partial(
        phrasing_study,
        pipe,
        method=method,
        prompts=prompts,
        seed=seed,
        calibrate=calibrate or DEFAULT_CALIBRATION,
        measure=measure,
        max_fpr=max_fpr,
        budgets=budgets,
        steps=steps,
        guidance=guidance,
        data=data,
    )
    report = _run_saved_study(study, out, save_phrasing_study, saved, progress)
    typer.echo(phrasing_markdown(report), nl=False)
    if write:
        _write_phrasing_limits(directory, report, max_fpr)


def _write_phrasing_limits(directory: Path, report, max_fpr: float) -> None:
    """Store the limits a phrasing study calibrated, with where they came from."""
    from ..modeldir import update_config_section

    settings = report.settings
    with writing(directory):
        update_config_section(
            directory,
            "explain",
            drop=("binding_calibration",),
            flag_ratio=report.flag_ratio,
            flag_ratio_source="eval phrasing",
            stray_limit=report.stray_limit,
            phrasing_calibration={
                "phrasings": settings["calibrate"],
                "prompts": settings["prompts"],
                "seed": settings["seed"],
                "max_fpr": max_fpr,
                "measured_pooled": report.to_dict()["measured_pooled"],
            },
        )
    note(
        f"flag_ratio {report.flag_ratio:.4g} and stray_limit {report.stray_limit:.4g} "
        f"written to {directory / 'config.json'}"
    )


@app.command("relevance")
def eval_relevance(
    model: ModelOption = None,
    data: Annotated[
        str,
        typer.Option(
            help="'shapes', an emoji import (bcosdiff data emoji: its scenes' captions) "
            "or an image folder with metadata.jsonl."
        ),
    ] = "shapes",
    captions: Annotated[int, typer.Option(help="Number of captions.")] = 100,
    steps: StepsOption = 25,
    seed: Annotated[int, typer.Option(help="Caption sampling seed; caption k uses seed+k.")] = 0,
    top: Annotated[int, typer.Option(help="Rows of the markdown table.")] = 20,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("eval-relevance"),
    progress: ProgressOption = True,
    device: DeviceOption = None,
) -> None:
    """Mean relevance per word over a data set's captions, with occurrence counts."""
    from tqdm import tqdm

    from ..data.captions import load_captions
    from ..evaluation.relevance import relevance_table
    from ..pipeline import load_pipeline

    if captions < 1 or steps < 1 or top < 1:
        raise BcosdiffError("captions, steps and top must be at least 1")
    texts = load_captions(data, captions, seed)
    pipe = load_pipeline(model, device)
    bar = (lambda items: tqdm(items, desc="explaining", unit="caption")) if progress else None
    table = relevance_table(pipe, texts, steps=steps, seed=seed, progress=bar)
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
        table.write_csv(out / "relevance.csv")
        text = table.markdown(top)
        (out / "relevance.md").write_text(text, encoding="utf-8")
    typer.echo(text, nl=False)


@app.command("faithfulness")
def eval_faithfulness(
    model: ModelOption = None,
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method", "--methods", help="Explanation method(s), repeatable; default bcos."
        ),
    ] = None,
    prompts: Annotated[int, typer.Option(help="Held-out prompts.")] = 24,
    two_object_share: Annotated[float, typer.Option(help="Share of two-object prompts.")] = 0.5,
    data: SceneDataOption = "shapes",
    steps: StepsOption = 25,
    seed: Annotated[int, typer.Option(help="Prompt seed; prompt k uses sampling seed k.")] = 0,
    deletion: Annotated[bool, typer.Option(help="Run the deletion test.")] = True,
    insertion: Annotated[
        bool, typer.Option(help="Run the insertion / deletion games (AUC).")
    ] = True,
    shown_only: Annotated[
        bool,
        typer.Option(
            help="Explain only the images that show every asked object (token specificity "
            "where each word has its own object)."
        ),
    ] = False,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("eval-faithfulness"),
    progress: ProgressOption = True,
    guidance: GuidanceOption = None,
    device: DeviceOption = None,
) -> None:
    """Localisation, specificity, failure detection and deletion against ground truth."""
    import json

    from tqdm import tqdm

    from ..evaluation.faithfulness import evaluate_faithfulness, faithfulness_markdown
    from ..pipeline import load_pipeline

    if prompts < 1 or steps < 1 or not 0 <= two_object_share <= 1:
        raise BcosdiffError("need prompts >= 1, steps >= 1 and 0 <= two-object-share <= 1")
    pipe = load_pipeline(model, device)
    guidance = pipe.guidance_scale(guidance)
    truth = None
    if data != "shapes":
        from ..evaluation.faithfulness import EmojiTruth

        truth = EmojiTruth.from_import(Path(data), seed, two_object_share)
    bar = (lambda items: tqdm(items, desc="prompts", unit="prompt")) if progress else None
    try:
        results = evaluate_faithfulness(
            pipe,
            method or ["bcos"],
            truth=truth,
            prompts=prompts,
            two_object_share=two_object_share,
            steps=steps,
            seed=seed,
            guidance=guidance,
            deletion=deletion,
            insertion=insertion,
            shown_only=shown_only,
            progress=bar,
        )
    except ValueError as exc:
        raise BcosdiffError(str(exc)) from None
    text = faithfulness_markdown(results)
    record = {
        "model": pipe.name,
        "data": data,
        "steps": steps,
        "guidance": guidance,
        "seed": seed,
        "two_object_share": two_object_share,
        "shown_only": shown_only,
        "results": [r.to_dict() for r in results],
    }
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
        (out / "faithfulness.json").write_text(json.dumps(record, indent=2) + "\n")
        (out / "faithfulness.md").write_text(text, encoding="utf-8")
    typer.echo(text, nl=False)


@app.command("fid")
def eval_fid(
    model: ModelOption = None,
    data: Annotated[
        str, typer.Option(help="'shapes' or an image folder with metadata.jsonl.")
    ] = "shapes",
    count: Annotated[int, typer.Option(help="Images per side (paper: 100,000).")] = 1000,
    steps: StepsOption = 25,
    seed: Annotated[int, typer.Option(help="Data seed; image i is sampled with seed+i.")] = 0,
    batch: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    inception_weights: Annotated[
        Path | None,
        typer.Option(
            help="InceptionV3 weights (.safetensors) for FID; without them, shapes "
            "data get the labelled shapes Fréchet distance."
        ),
    ] = None,
    reference: Annotated[
        bool, typer.Option(help="Also measure two disjoint real sets against each other.")
    ] = True,
    out: Annotated[Path | None, typer.Option(help="Also write the result as JSON here.")] = None,
    progress: ProgressOption = True,
    guidance: GuidanceOption = None,
    device: DeviceOption = None,
) -> None:
    """FID (or the labelled shapes Fréchet distance) of generated vs real images."""
    import json

    from tqdm import tqdm

    from ..distributed import process_shard
    from ..evaluation.fid import frechet_distance
    from ..pipeline import load_pipeline

    if count < 2 or steps < 1 or batch < 1:
        raise BcosdiffError("need count >= 2, steps >= 1 and batch >= 1")
    rank, world = process_shard()  # one shard per process under accelerate launch / torchrun
    pipe = load_pipeline(model, device)
    guidance = pipe.guidance_scale(guidance)
    bar = (lambda items: tqdm(items, desc="batches", unit="batch")) if progress else None
    try:
        result = frechet_distance(
            pipe,
            data=data,
            count=count,
            steps=steps,
            seed=seed,
            guidance=guidance,
            batch=batch,
            inception_weights=inception_weights,
            progress=bar,
            rank=rank,
            world=world,
            reference=reference,
        )
    except ValueError as exc:
        raise BcosdiffError(str(exc)) from None
    if rank != 0:
        return
    line = (
        f"{result.metric}: {result.value:.4f} ({result.count} generated vs {result.count} real "
        f"images, {steps} steps, guidance {guidance:g}, "
        f"features: {result.feature_extractor})"
    )
    if result.real_vs_real is not None:
        line += f"; real vs real: {result.real_vs_real:.4f}"
    if out is not None:
        with writing(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            data = {"model": pipe.name, "guidance": guidance, **result.to_dict()}
            out.write_text(json.dumps(data, indent=2) + "\n")
    typer.echo(line)
