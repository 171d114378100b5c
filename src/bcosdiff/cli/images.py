"""``generate``, ``explain`` and ``serve``: sample a model, explain what it drew, or both
from a local web page."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import typer

from ..errors import BcosdiffError
from .options import (
    DeviceOption,
    DictionaryOption,
    GuidanceOption,
    ModelOption,
    NoiseSeedOption,
    PromptArgument,
    RegenerateOption,
    ScheduleOption,
    ShiftOption,
    SteerOption,
    StepsOption,
)
from .output import image_format, note, save_image, writing


def _schedule(pipe, *, name: str, steps: int, shift: int):
    """None for uniform spacing, else the exponential schedule (bad values: exit 2)."""
    from ..diffusion import STAGES, DDIMSchedule

    if name == "uniform":
        return None
    if name not in STAGES:
        raise BcosdiffError(f"unknown schedule {name!r}; expected uniform, early or late")
    try:
        return DDIMSchedule.exponential(pipe.process, steps, stage=name, shift=shift)
    except ValueError as exc:
        raise BcosdiffError(str(exc)) from None


@dataclass(frozen=True)
class _Sampling:
    """The sampling options that ``generate`` and ``explain`` share."""

    model: str | None
    steps: int
    seed: int
    guidance: float | None
    schedule: str
    shift: int
    device: str | None
    dictionary: Path | None
    steer: str | None


def _request(prompt: str, sampling: _Sampling, check_first: Callable[[], None]):
    """``(pipeline, RunRequest)`` for a command: the request's own values and the command's
    ``check_first`` are checked before the model loads (bad input costs no loading time),
    then the schedule and steering are built for the loaded model, and the prompt's words
    the model never saw are named on stderr."""
    from ..pipeline import load_pipeline
    from ..request import RunRequest
    from ..service import read_steering, steering_for

    base = RunRequest(
        prompt=prompt, steps=sampling.steps, seed=sampling.seed, guidance=sampling.guidance
    )
    check_first()
    steering_request = read_steering(sampling.dictionary, sampling.steer)
    pipe = load_pipeline(sampling.model, sampling.device)
    request = replace(
        base,
        schedule=_schedule(
            pipe, name=sampling.schedule, steps=sampling.steps, shift=sampling.shift
        ),
        steering=steering_for(pipe, steering_request),
    )
    _report_unknown(pipe, prompt)
    return pipe, request


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
    from ..service import generate_request

    def check_outputs() -> None:
        for target in (out, progression):
            if target is not None:
                image_format(target)
        if regenerate and progression is not None:
            raise BcosdiffError("--progression and --regenerate cannot be combined")

    pipe, request = _request(
        prompt,
        _Sampling(model, steps, seed, guidance, schedule, shift, device, dictionary, steer),
        check_outputs,
    )
    generated = generate_request(pipe, request, regenerate=regenerate)
    if generated.explanation is not None:
        _report_attempts(generated.explanation)
    if progression is not None:
        from ..report.figures import progression_strip

        save_image(progression_strip(generated.run), progression)
    save_image(generated.image, out)
    typer.echo(str(out))


def _report_attempts(explanation) -> None:
    """One line on stderr: which seed shows every content word on its own object, or that
    none did."""
    tried = [seed for seed, *_ in explanation.attempts]
    if not explanation.findings:
        if len(tried) > 1:
            note(
                f"seed {explanation.seed} shows every content word on its object "
                f"(attempt {len(tried)})"
            )
        return
    found = [f"flagged: {', '.join(dict.fromkeys(explanation.known_flagged))}"]
    found += [f"misbound: {', '.join(dict.fromkeys(explanation.misbound_words))}"]
    found = [f for f in found if not f.endswith(": ")]
    note(
        f"no seed in {tried[0]}..{tried[-1]} shows every content word on its object; kept "
        f"seed {explanation.seed}, {'; '.join(found)}",
        "warning",
    )


def _report_unknown(pipe, prompt: str) -> None:
    """One line on stderr naming the prompt's words that the model never saw in training."""
    unknown = pipe.unknown_words(prompt)
    if unknown:
        note(
            f"{', '.join(unknown)}: not in {pipe.name}'s training captions; the model cannot "
            "have learned to draw " + ("it" if len(unknown) == 1 else "them")
        )


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

    from ..explain.registry import get_method
    from ..report.figures import save_explanation
    from ..service import explain_methods

    methods = list(dict.fromkeys(method or ["bcos"]))

    def check_methods() -> None:
        for name in methods:
            get_method(name)

    pipe, request = _request(
        prompt,
        _Sampling(model, steps, seed, guidance, schedule, shift, device, dictionary, steer),
        check_methods,
    )
    views = explain_methods(pipe, request, methods, regenerate=regenerate)
    explanation = views[methods[0]]
    if regenerate:
        _report_attempts(explanation)
    with writing(out):
        data = save_explanation(explanation, out)
        if html:
            from ..report.html import explanation_page

            (out / "report.html").write_text(explanation_page(views), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(str(out))


def serve(
    model: ModelOption = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 7860,
    device: DeviceOption = None,
) -> None:
    """A local web page: type a prompt, see the image and its explanation."""
    from ..pipeline import load_pipeline
    from ..serve import make_server

    if not 0 <= port <= 65535:
        raise BcosdiffError(f"port must be between 0 and 65535, got {port}")
    pipe = load_pipeline(model, device)
    server = make_server(pipe, host, port)
    address = f"http://{host}:{server.server_address[1]}/"
    note(f"serving {pipe.name} at {address} (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
