"""The ``bcosdiff`` command line.

Bad input never shows a traceback: usage errors and :class:`~bcosdiff.errors.BcosdiffError`
are printed as one ``bcosdiff: error: ...`` line on stderr with exit status 2.
"""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .errors import BcosdiffError

app = typer.Typer(
    name="bcosdiff",
    help="Inherently interpretable text-to-image diffusion with B-cos U-Nets.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

data_app = typer.Typer(help="Build or check training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
eval_app = typer.Typer(help="Measure models and explanations.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
sae_app = typer.Typer(
    help="Dictionary learning on U-Net activations: sparse autoencoders and ITDA.",
    no_args_is_help=True,
)
app.add_typer(sae_app, name="sae")

ModelOption = Annotated[
    str | None, typer.Option("--model", "-m", help="Model directory (or bundled model name).")
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bcosdiff {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Inherently interpretable text-to-image diffusion with B-cos U-Nets."""


PromptArgument = Annotated[str, typer.Argument(help="The text prompt.")]
StepsOption = Annotated[int, typer.Option(help="DDIM steps (deterministic, σ_t = 0).")]
NoiseSeedOption = Annotated[int, typer.Option(help="Seed of the initial noise.")]
RegenerateOption = Annotated[
    int,
    typer.Option(
        help="Retry with seeds SEED+1 … SEED+N while a content word of the prompt is flagged "
        "as not shown (B-cos models).",
    ),
]


ScheduleOption = Annotated[
    str,
    typer.Option(
        help="Time steps: uniform, or the exponential 'early' (dense near pure noise) or "
        "'late' (dense near the image) schedule."
    ),
]
ShiftOption = Annotated[int, typer.Option(help="Shift γ of the exponential schedules.")]
DeviceOption = Annotated[
    str | None,
    typer.Option(
        help="Where the model runs: cpu (default), cuda, cuda:N, mps.", show_default=False
    ),
]
DictionaryOption = Annotated[
    Path | None,
    typer.Option(help="Dictionary file (bcosdiff sae train) whose feature --steer adds."),
]
SteerOption = Annotated[
    str | None,
    typer.Option(
        help="FEATURE:STRENGTH: add the feature's direction at the dictionary's site on "
        "every step (strength in units of the site's mean update norm)."
    ),
]
GuidanceOption = Annotated[
    float | None,
    typer.Option(
        help="Classifier-free guidance scale w (1 = none); default: the model's own.",
        show_default=False,
    ),
]


def _schedule(pipe, *, name: str, steps: int, shift: int):
    """None for uniform spacing, else the exponential schedule (bad values: exit 2)."""
    from .diffusion import STAGES, DDIMSchedule

    if name == "uniform":
        return None
    if name not in STAGES:
        raise BcosdiffError(f"unknown schedule {name!r}; expected uniform, early or late")
    try:
        return DDIMSchedule.exponential(pipe.process, steps, stage=name, shift=shift)
    except ValueError as exc:
        raise BcosdiffError(str(exc)) from None


@app.command()
def generate(
    prompt: PromptArgument,
    model: ModelOption = None,
    steps: StepsOption = 25,
    seed: NoiseSeedOption = 0,
    out: Annotated[Path, typer.Option(help="Output PNG file.")] = Path("image.png"),
    regenerate: RegenerateOption = 0,
    schedule: ScheduleOption = "uniform",
    shift: ShiftOption = 30,
    progression: Annotated[
        Path | None,
        typer.Option(help="Also write the clean image predicted at every step (a PNG strip)."),
    ] = None,
    guidance: GuidanceOption = None,
    device: DeviceOption = None,
    dictionary: DictionaryOption = None,
    steer: SteerOption = None,
) -> None:
    """Generate an image for PROMPT."""
    from .pipeline import load_pipeline
    from .request import RunRequest
    from .service import generate_request, read_steering, steering_for

    base = RunRequest(prompt=prompt, steps=steps, seed=seed, guidance=guidance)  # checked first
    for target in (out, progression):
        if target is not None:
            _image_format(target)  # before the model loads
    if regenerate and progression is not None:
        raise BcosdiffError("--progression and --regenerate cannot be combined")
    steering_request = read_steering(dictionary, steer)
    pipe = load_pipeline(model, device)
    request = replace(
        base,
        schedule=_schedule(pipe, name=schedule, steps=steps, shift=shift),
        steering=steering_for(pipe, steering_request),
    )
    generated = generate_request(pipe, request, regenerate=regenerate)
    if generated.explanation is not None:
        _report_attempts(generated.explanation)
    if progression is not None:
        from .explain.figures import progression_strip

        _save_image(progression_strip(generated.run), progression)
    _save_image(generated.image, out)
    typer.echo(str(out))


def _report_attempts(explanation) -> None:
    """One line on stderr: which seed shows every content word on its own object, or that
    none did."""
    tried = [seed for seed, *_ in explanation.attempts]
    if not explanation.flagged_tokens and not explanation.misbound_words:
        if len(tried) > 1:
            _note(
                f"seed {explanation.seed} shows every content word on its object "
                f"(attempt {len(tried)})"
            )
        return
    found = [f"flagged: {', '.join(dict.fromkeys(explanation.flagged_tokens))}"]
    found += [f"misbound: {', '.join(dict.fromkeys(explanation.misbound_words))}"]
    found = [f for f in found if not f.endswith(": ")]
    _note(
        f"no seed in {tried[0]}..{tried[-1]} shows every content word on its object; kept "
        f"seed {explanation.seed}, {'; '.join(found)}",
        "warning",
    )


@app.command()
def explain(
    prompt: PromptArgument,
    model: ModelOption = None,
    steps: StepsOption = 25,
    seed: NoiseSeedOption = 0,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("explanation"),
    as_json: Annotated[bool, typer.Option("--json", help="Print explanation.json.")] = False,
    regenerate: RegenerateOption = 0,
    method: Annotated[
        list[str] | None,
        typer.Option(
            help="Attribution method: bcos (B-cos models), xattn, gradxinput, dfrise, dfcam "
            "(any model), or bcos-removal / bcos-mass (other B-cos read-outs). Repeatable: "
            "the first writes the files, all appear in the --html selector."
        ),
    ] = None,
    schedule: ScheduleOption = "uniform",
    shift: ShiftOption = 30,
    guidance: GuidanceOption = None,
    device: DeviceOption = None,
    dictionary: DictionaryOption = None,
    steer: SteerOption = None,
    html: Annotated[
        bool, typer.Option(help="Also write report.html: one self-contained interactive page.")
    ] = False,
) -> None:
    """Generate an image for PROMPT and explain it token by token."""
    import json

    from .explain.figures import save_explanation
    from .explain.registry import get_method
    from .pipeline import load_pipeline
    from .request import RunRequest
    from .service import explain_methods, read_steering, steering_for

    methods = list(dict.fromkeys(method or ["bcos"]))
    base = RunRequest(prompt=prompt, steps=steps, seed=seed, guidance=guidance)  # checked first
    for name in methods:
        get_method(name)  # an unknown name fails before the model loads
    steering_request = read_steering(dictionary, steer)
    pipe = load_pipeline(model, device)
    request = replace(
        base,
        schedule=_schedule(pipe, name=schedule, steps=steps, shift=shift),
        steering=steering_for(pipe, steering_request),
    )
    views = explain_methods(pipe, request, methods, regenerate=regenerate)
    explanation = views[methods[0]]
    if regenerate:
        _report_attempts(explanation)
    with _writing(out):
        data = save_explanation(explanation, out)
        if html:
            from .explain.html import explanation_page

            (out / "report.html").write_text(explanation_page(views), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(str(out))


@app.command()
def serve(
    model: ModelOption = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 7860,
    device: DeviceOption = None,
) -> None:
    """A local web page: type a prompt, see the image and its explanation."""
    from .pipeline import load_pipeline
    from .serve import make_server

    if not 0 <= port <= 65535:
        raise BcosdiffError(f"port must be between 0 and 65535, got {port}")
    pipe = load_pipeline(model, device)
    server = make_server(pipe, host, port)
    address = f"http://{host}:{server.server_address[1]}/"
    _note(f"serving {pipe.name} at {address} (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
def info(model: Annotated[str, typer.Argument(help="Model directory.")]) -> None:
    """Print a model directory's configuration and size."""
    import json

    from .modeldir import load_unet, read_config

    config = read_config(Path(model))
    unet = load_unet(Path(model))
    params = sum(p.numel() for p in unet.parameters())
    typer.echo(json.dumps(config, indent=2, sort_keys=True))
    typer.echo(f"parameters: {params:,}")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Training config (.yaml, .toml or .json).")],
    output_dir: Annotated[
        str | None, typer.Option(help="Override the config's output_dir.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Override the config's steps.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train (or resume) a model; the EMA weights are exported to OUTPUT_DIR/model."""
    from .training import TrainConfig, load_train_config
    from .training import train as run_training

    settings = load_train_config(config).to_dict()
    if output_dir is not None:
        settings["output_dir"] = output_dir
    if steps is not None:
        settings["steps"] = steps
    import shlex

    # The recorded command leaves out --output-dir: where a run is stored does not change it.
    command = shlex.join(
        ["bcosdiff", "train", str(config)] + (["--steps", str(steps)] if steps is not None else [])
    )
    model_dir = run_training(TrainConfig.from_dict(settings), progress=progress, command=command)
    typer.echo(str(model_dir))


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="Training output directory.")],
    out: Annotated[Path, typer.Argument(help="Model directory to write.")],
    weights: Annotated[str, typer.Option(help="'ema' or 'model' weights.")] = "ema",
    checkpoint: Annotated[
        str | None, typer.Option(help="e.g. step-00001000 (default: latest)")
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(help="Default guidance scale of the model (default: the training config's)."),
    ] = None,
    keep_card: Annotated[
        bool, typer.Option(help="Keep the MODEL_CARD.md that OUT already has.")
    ] = False,
) -> None:
    """Export a training checkpoint as a model directory."""
    from .training import export_checkpoint

    written = export_checkpoint(
        run_dir, out, weights=weights, checkpoint=checkpoint, guidance=guidance, keep_card=keep_card
    )
    typer.echo(str(written))


@data_app.command("shapes")
def data_shapes(
    out: Annotated[Path, typer.Argument(help="Output image folder.")],
    count: Annotated[int, typer.Option(help="Number of images.")] = 1000,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 32,
    seed: Annotated[int, typer.Option(help="Data seed.")] = 0,
    two_object_prob: Annotated[float, typer.Option(help="Share of two-object images.")] = 0.3,
) -> None:
    """Write shapes images, masks and per-word ground truth as an image folder."""
    from .data.export import export_shapes

    if count < 1 or size < 8:
        raise BcosdiffError("count must be >= 1 and size >= 8")
    export_shapes(out, count=count, size=size, seed=seed, two_object_prob=two_object_prob)
    typer.echo(f"{count} images in {out}")


@data_app.command("emoji")
def data_emoji(
    out: Annotated[Path, typer.Argument(help="Output image folder.")],
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="fluent, noto, openmoji, twemoji (SVG, the default) and/or twitter, google (PNG).",
        ),
    ] = None,
    tarball: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=PATH of an npm tarball at hand (a set or emojilib); else npm pack."
        ),
    ] = None,
    size: Annotated[int, typer.Option(help="Raster side of the SVG artwork in pixels.")] = 64,
    all_concepts: Annotated[
        bool, typer.Option("--all-concepts", help="Keep emoji that not every set draws.")
    ] = False,
) -> None:
    """Import emoji artwork from npm: images, alpha masks, names, keywords and licences."""
    from .data.emoji import DEFAULT_SETS, import_emoji

    given = {}
    for item in tarball or []:
        name, sep, path = item.partition("=")
        if not sep:
            raise BcosdiffError(f"--tarball takes NAME=PATH, got {item!r}")
        given[name] = Path(path)
    counts = import_emoji(
        out,
        sets=sets or DEFAULT_SETS,
        tarballs=given,
        size=size,
        common_only=not all_concepts,
    )
    for name, n in counts.items():
        typer.echo(f"{name}: {n} images")


@data_app.command("laion")
def data_laion(
    parquet: Annotated[list[Path], typer.Argument(help="LAION metadata parquet files.")],
    out: Annotated[Path, typer.Option(help="Selection to write (.parquet).")] = Path(
        "laion-selection.parquet"
    ),
    objects: Annotated[str, typer.Option(help="Comma-separated object names.")] = (
        "banana,cat,goat,flamingo,penguin"
    ),
    top_n: Annotated[int, typer.Option(help="Rows kept per object.")] = 20_000,
    shards: Annotated[Path, typer.Option(help="Where img2dataset should write shards.")] = Path(
        "laion-shards"
    ),
) -> None:
    """Select the paper's LAION subset and print the img2dataset download command."""
    import pyarrow.parquet as pq

    from .data.laion import img2dataset_command, select_laion

    names = tuple(o.strip() for o in objects.split(",") if o.strip())
    table = select_laion(list(parquet), names, top_n)
    pq.write_table(table, out)
    counts = {n: table.column("object").to_pylist().count(n) for n in names}
    typer.echo(f"selected {table.num_rows} rows {counts} -> {out}")
    typer.echo(img2dataset_command(out, shards))


@data_app.command("folder")
def data_folder(root: Annotated[Path, typer.Argument(help="Image folder.")]) -> None:
    """Check an image folder with metadata.jsonl (file_name, text)."""
    from .data.images import read_metadata

    rows = read_metadata(root)
    typer.echo(f"{len(rows)} images with captions in {root}")


@eval_app.command("flags")
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
    data: Annotated[
        str, typer.Option(help="'shapes', or an emoji import (bcosdiff data emoji).")
    ] = "shapes",
) -> None:
    """Calibrate the failure-detection threshold of a model on single-object training captions."""
    import json

    from .evaluation.flags import calibrate_flag_ratio
    from .modeldir import update_config_section
    from .pipeline import load_pipeline, resolve_model

    if captions < 1 or steps < 1 or not 0 <= quantile < 1:
        raise BcosdiffError("need captions >= 1, steps >= 1 and 0 <= quantile < 1")
    directory = resolve_model(model)
    pipe = load_pipeline(directory)
    truth = None
    if data != "shapes":
        from .evaluation.faithfulness import EmojiTruth

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
        with _writing(directory):
            update_config_section(
                directory,
                "explain",
                flag_ratio=calibration.ratio,
                flag_ratio_source="eval flags",
                flag_signal=signal,
                calibration=calibration.to_dict(),
            )
        _note(
            f"flag_ratio {calibration.ratio:.4g} ({signal}) written to {directory / 'config.json'}"
        )


@eval_app.command("binding")
def eval_binding(
    model: ModelOption = None,
    method: Annotated[
        str | None, typer.Option(help="Explanation method; default the model's own.")
    ] = None,
    prompts: Annotated[int, typer.Option(help="Held-out two-object prompts measured.")] = 60,
    seed: Annotated[int, typer.Option(help="Data seed of the measured prompts.")] = 1,
    calibration_prompts: Annotated[
        int, typer.Option(help="Two-object prompts the stray limit is chosen on.")
    ] = 60,
    calibration_seed: Annotated[int, typer.Option(help="Their data seed.")] = 0,
    max_fpr: Annotated[
        float, typer.Option(help="Highest false-positive rate allowed in calibration.")
    ] = 0.15,
    regenerate: Annotated[
        list[int] | None,
        typer.Option(help="--regenerate budgets to measure (repeatable; 0 skips)."),
    ] = None,
    steps: StepsOption = 25,
    guidance: GuidanceOption = None,
    write: Annotated[
        bool, typer.Option(help="Store the flag ratio and stray limit in config.json.")
    ] = False,
    data: Annotated[
        str,
        typer.Option(help="'shapes', or an emoji import (bcosdiff data emoji) for emoji scenes."),
    ] = "shapes",
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("eval-binding"),
    resume: Annotated[
        bool,
        typer.Option(
            help="Reuse the explained prompts saved in --out by a run with the same "
            "settings, and go on from the first prompt missing."
        ),
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    device: DeviceOption = None,
) -> None:
    """Calibrate the flag rule and the binding diagnostics together on two-object prompts,
    and measure how they catch the objects not drawn as asked."""
    import json

    from tqdm import tqdm

    from .evaluation.binding import binding_markdown, binding_study
    from .modeldir import atomic_write, update_config_section
    from .pipeline import load_pipeline, resolve_model
    from .service import default_method

    budgets = sorted(set(regenerate if regenerate is not None else [3, 5]))
    if prompts < 1 or calibration_prompts < 1 or steps < 1 or not 0 <= max_fpr <= 1:
        raise BcosdiffError("need prompts >= 1, steps >= 1 and 0 <= max-fpr <= 1")
    if any(n < 0 for n in budgets):
        raise BcosdiffError("--regenerate budgets must be at least 0")
    directory = resolve_model(model)
    pipe = load_pipeline(directory, device)
    method = method or default_method(pipe)
    if write and method != default_method(pipe):
        raise BcosdiffError("--write stores the limit of the model's own method only")
    saved = _saved_binding_study(out) if resume else None

    def save(report: dict, records: dict) -> None:  # after every prompt and stage
        rows = {stage: [r.to_dict() for r in found] for stage, found in records.items()}
        texts = {  # records first: a report never names prompts that were not saved
            "records.json": json.dumps(rows, indent=1) + "\n",
            "binding.json": json.dumps(report, indent=2) + "\n",
            "binding.md": binding_markdown(report),
        }
        with _writing(out):
            for name, text in texts.items():  # whole files only: a kill keeps the last save
                atomic_write(out / name, lambda tmp, text=text: tmp.write_text(text, "utf-8"))

    try:
        report, _ = binding_study(
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
            progress=(lambda items, label: tqdm(items, desc=label, unit="prompt"))
            if progress
            else None,
            on_progress=save,
            saved=saved,
        )
    except ValueError as exc:
        prefix = f"cannot resume from {out}: " if saved and "saved study" in str(exc) else ""
        raise BcosdiffError(prefix + str(exc)) from None
    ratio, limit = report["calibration"]["flag_ratio"], report["calibration"]["stray_limit"]
    typer.echo(binding_markdown(report), nl=False)
    if write:
        with _writing(directory):
            update_config_section(
                directory,
                "explain",
                flag_ratio=ratio,
                flag_ratio_source="eval binding",
                stray_limit=limit,
                binding_calibration=report["calibration"],
            )
        _note(
            f"flag_ratio {ratio:.4g} and stray_limit {limit:.4g} written to "
            f"{directory / 'config.json'}"
        )


def _saved_binding_study(out: Path) -> tuple[dict, dict] | None:
    """``(report, records)`` an earlier ``eval binding`` saved in ``out``, or None."""
    import json

    from .evaluation.binding import load_records

    try:
        saved = json.loads((out / "binding.json").read_text(encoding="utf-8"))
        rows = json.loads((out / "records.json").read_text(encoding="utf-8"))
        load_records(rows)  # malformed records fail here, before any model work
    except FileNotFoundError:
        return None  # nothing saved yet: a fresh run
    except (OSError, ValueError) as exc:
        raise BcosdiffError(f"cannot resume from {out}: {exc}") from None
    if not isinstance(saved, dict):
        raise BcosdiffError(f"cannot resume from {out}: binding.json is not a report")
    return saved, rows


@eval_app.command("relevance")
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
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    device: DeviceOption = None,
) -> None:
    """Mean relevance per word over a data set's captions, with occurrence counts."""
    from tqdm import tqdm

    from .data.captions import load_captions
    from .evaluation.relevance import relevance_table
    from .pipeline import load_pipeline

    if captions < 1 or steps < 1 or top < 1:
        raise BcosdiffError("captions, steps and top must be at least 1")
    texts = load_captions(data, captions, seed)
    pipe = load_pipeline(model, device)
    bar = (lambda items: tqdm(items, desc="explaining", unit="caption")) if progress else None
    table = relevance_table(pipe, texts, steps=steps, seed=seed, progress=bar)
    with _writing(out):
        out.mkdir(parents=True, exist_ok=True)
        table.write_csv(out / "relevance.csv")
        text = table.markdown(top)
        (out / "relevance.md").write_text(text, encoding="utf-8")
    typer.echo(text, nl=False)


@eval_app.command("faithfulness")
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
    data: Annotated[
        str, typer.Option(help="'shapes', or an emoji import (bcosdiff data emoji) for scenes.")
    ] = "shapes",
    steps: StepsOption = 25,
    seed: Annotated[int, typer.Option(help="Prompt seed; prompt k uses sampling seed k.")] = 0,
    deletion: Annotated[bool, typer.Option(help="Run the deletion test.")] = True,
    insertion: Annotated[
        bool, typer.Option(help="Run the insertion / deletion games (AUC).")
    ] = True,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("eval-faithfulness"),
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    guidance: GuidanceOption = None,
    device: DeviceOption = None,
) -> None:
    """Localisation, specificity, failure detection and deletion against ground truth."""
    import json

    from tqdm import tqdm

    from .evaluation.faithfulness import evaluate_faithfulness, faithfulness_markdown
    from .pipeline import load_pipeline

    if prompts < 1 or steps < 1 or not 0 <= two_object_share <= 1:
        raise BcosdiffError("need prompts >= 1, steps >= 1 and 0 <= two-object-share <= 1")
    pipe = load_pipeline(model, device)
    guidance = pipe.guidance_scale(guidance)
    truth = None
    if data != "shapes":
        from .evaluation.faithfulness import EmojiTruth

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
        "results": [r.to_dict() for r in results],
    }
    with _writing(out):
        out.mkdir(parents=True, exist_ok=True)
        (out / "faithfulness.json").write_text(json.dumps(record, indent=2) + "\n")
        (out / "faithfulness.md").write_text(text, encoding="utf-8")
    typer.echo(text, nl=False)


@eval_app.command("fid")
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
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    guidance: GuidanceOption = None,
    device: DeviceOption = None,
) -> None:
    """FID (or the labelled shapes Fréchet distance) of generated vs real images."""
    import json

    from tqdm import tqdm

    from .distributed import process_shard
    from .evaluation.fid import frechet_distance
    from .pipeline import load_pipeline

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
        with _writing(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            data = {"model": pipe.name, "guidance": guidance, **result.to_dict()}
            out.write_text(json.dumps(data, indent=2) + "\n")
    typer.echo(line)


@sae_app.command("sites")
def sae_sites(model: ModelOption = None) -> None:
    """List the model's sites (spatial-transformer blocks) with channels and resolution."""
    import torch

    from .dictionary import record_updates, sites
    from .pipeline import load_pipeline

    pipe = load_pipeline(model)
    known = sites(pipe.unet)
    size, config = pipe.sample_size, pipe.unet.config
    x = torch.zeros(1, config.in_channels, size, size)
    with torch.no_grad(), record_updates(pipe.unet, list(known)) as records:
        pipe.unet(x, torch.zeros(1, dtype=torch.long), torch.zeros(1, 1, config.context_dim))
    for name, module in known.items():
        side = int(round(records[name][0].shape[1] ** 0.5))
        typer.echo(f"{name}\t{module.proj_out.out_features} channels\t{side}x{side}")


@sae_app.command("capture")
def sae_capture(
    model: ModelOption = None,
    site: Annotated[
        list[str] | None, typer.Option(help="Site(s) to record (bcosdiff sae sites).")
    ] = None,
    prompts: Annotated[int, typer.Option(help="Shapes training captions to sample.")] = 200,
    steps: StepsOption = 25,
    seed: Annotated[int, typer.Option(help="Caption seed; caption k uses noise seed k.")] = 0,
    shard_rows: Annotated[int, typer.Option(help="Rows per shard.")] = 65_536,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("activations"),
    guidance: GuidanceOption = None,
    device: DeviceOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Record the update (output - input) of U-Net sites at every position and step."""
    from tqdm import tqdm

    from .data.captions import load_captions
    from .dictionary import capture_activations, sites
    from .pipeline import load_pipeline

    if prompts < 1 or steps < 1 or shard_rows < 1:
        raise BcosdiffError("prompts, steps and shard-rows must be at least 1")
    pipe = load_pipeline(model, device)
    names = site or list(sites(pipe.unet))[-1:]
    known = sites(pipe.unet)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BcosdiffError(f"unknown site(s) {', '.join(unknown)}; known: {', '.join(known)}")
    captions = load_captions("shapes", prompts, seed)
    bar = (lambda items: tqdm(items, desc="prompts", unit="prompt")) if progress else None
    with _writing(out):
        written = capture_activations(
            pipe,
            prompts=captions,
            seeds=list(range(prompts)),
            out=out,
            names=names,
            steps=steps,
            shard_rows=shard_rows,
            guidance=guidance,
            progress=bar,
        )
    for name, paths in written.items():
        typer.echo(f"{name}: {len(paths)} shard(s) in {out / name}")


@sae_app.command("train")
def sae_train(
    activations: Annotated[Path, typer.Argument(help="A site's shard folder (sae capture).")],
    kind: Annotated[str, typer.Option(help="sae, itda or neurons (the baseline).")] = "sae",
    features: Annotated[int, typer.Option(help="SAE dictionary size (ITDA: cap / 16).")] = 256,
    k: Annotated[int, typer.Option(help="Non-zero codes per row (SAE TopK, ITDA L0).")] = 8,
    steps: Annotated[int, typer.Option(help="Training batches.")] = 2000,
    batch: Annotated[int, typer.Option(help="Rows per batch.")] = 512,
    lr: Annotated[float, typer.Option(help="SAE learning rate (Adam).")] = 1e-3,
    threshold: Annotated[float, typer.Option(help="ITDA's loss threshold τ.")] = 0.3,
    seed: Annotated[int, typer.Option(help="Shuffling and initialisation seed.")] = 0,
    out: Annotated[Path, typer.Option(help="Dictionary file (.safetensors).")] = Path(
        "dictionary.safetensors"
    ),
) -> None:
    """Learn a dictionary on all shards but the last; measure FVU, L0 and dead share on it."""
    import json

    from .dictionary import ActivationShards
    from .dictionary.store import save_dictionary
    from .dictionary.workflow import learn_dictionary

    if min(features, k, steps, batch) < 1 or not lr > 0 or not 0 < threshold < 1:
        raise BcosdiffError("need features, k, steps, batch >= 1, lr > 0 and 0 < threshold < 1")
    if kind == "sae" and k > features:
        raise BcosdiffError(f"k ({k}) cannot exceed the dictionary size ({features})")
    try:
        shards = ActivationShards(activations)
    except ValueError as exc:
        raise BcosdiffError(str(exc)) from None
    stored, metrics = learn_dictionary(
        shards,
        kind,
        features=features,
        k=k,
        steps=steps,
        batch=batch,
        lr=lr,
        threshold=threshold,
        seed=seed,
    )
    report = {
        "kind": kind,
        "site": stored.site,
        "model": stored.source_model,
        "held_out": metrics.to_dict(),
    }
    with _writing(out):
        save_dictionary(out, stored)
        out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    typer.echo(
        f"{kind} at {stored.site}: {metrics.features} features, held-out FVU {metrics.fvu:.4f}, "
        f"L0 {metrics.l0:.2f}, dead {metrics.dead_share:.1%} ({metrics.rows} rows) -> {out}"
    )


@sae_app.command("interpret")
def sae_interpret(
    dictionary: Annotated[Path, typer.Argument(help="Dictionary file (sae train).")],
    model: ModelOption = None,
    images: Annotated[int, typer.Option(help="Held-out shapes images.")] = 200,
    cards: Annotated[int, typer.Option(help="Feature cards to draw (best first).")] = 8,
    min_rows: Annotated[
        int, typer.Option(help="Score only features active on at least this many positions.")
    ] = 100,
    seed: Annotated[
        int | None, typer.Option(help="Data seed of the held-out images [default: 123].")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("interpretation"),
    device: DeviceOption = None,
) -> None:
    """Match every feature to the shapes attribute it tracks best (AUROC vs ground truth)."""
    import json

    from .dictionary.store import load_dictionary
    from .dictionary.workflow import interpret_dictionary, write_feature_cards
    from .pipeline import load_pipeline

    if images < 2 or cards < 0:
        raise BcosdiffError("need images >= 2 and cards >= 0")
    stored = load_dictionary(dictionary)
    pipe = load_pipeline(model, device)
    found = interpret_dictionary(pipe, stored, images=images, min_rows=min_rows, seed=seed)
    with _writing(out):
        out.mkdir(parents=True, exist_ok=True)
        data = {
            "dictionary": str(dictionary),
            "kind": stored.kind,
            "site": stored.site,
            "images": images,
            "seed": found.seed,
            "summary": found.summary,
            "features": [r.__dict__ for r in found.readings],
        }
        (out / "interpretation.json").write_text(json.dumps(data, indent=2) + "\n")
        write_feature_cards(found, stored, out=out, cards=cards, size=pipe.sample_size)
    typer.echo(json.dumps(found.summary, indent=2))


@contextmanager
def _writing(target: Path):
    """Turn a failed write under ``target`` into one clear error line."""
    try:
        yield
    except OSError as exc:
        raise BcosdiffError(f"cannot write {target}: {exc.strerror or exc}") from None


IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def _image_format(out: Path) -> str:
    """The image format named by ``out``'s suffix; anything else is refused."""
    kind = IMAGE_FORMATS.get(out.suffix.lower())
    if kind is None:
        raise BcosdiffError(
            f"cannot tell the image format from {out.name!r}: use .png, .jpg, .jpeg or .webp"
        )
    return kind


def _save_image(image, out: Path) -> None:
    kind = _image_format(out)
    with _writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        options = {"quality": 95} if kind in ("JPEG", "WEBP") else {}
        image.save(out, format=kind, **options)


def _note(message: str, kind: str = "note") -> None:
    print(f"bcosdiff: {kind}: {message}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    _note(" ".join(str(message).split()), "warning")


def _fail(message: str) -> int:
    print(f"bcosdiff: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # one "bcosdiff: warning:" line each
            result = app(args=argv, standalone_mode=False, prog_name="bcosdiff")
    except typer.Abort:
        return _fail("aborted")
    except typer.TyperException as exc:  # usage errors of the (vendored) click layer
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message())
            return 0
        return _fail(" ".join(exc.format_message().split()))
    except BcosdiffError as exc:
        return _fail(" ".join(str(exc).split()))
    except KeyboardInterrupt:
        return _fail("interrupted")
    return result if isinstance(result, int) else 0


def run() -> None:
    """``bcosdiff`` console script."""
    sys.exit(main())
