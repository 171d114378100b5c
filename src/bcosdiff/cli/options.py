"""Options and arguments that several commands share (typer ``Annotated`` types)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelOption = Annotated[
    str | None, typer.Option("--model", "-m", help="Model directory (or bundled model name).")
]

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
ProgressOption = Annotated[bool, typer.Option(help="Show a progress bar.")]
ExplanationMethodOption = Annotated[
    str | None, typer.Option(help="Explanation method; default the model's own.")
]

# The two-object studies (``eval binding``, ``eval phrasing``).
MaxFprOption = Annotated[
    float, typer.Option(help="Highest false-positive rate allowed in calibration.")
]
RegenerateBudgetsOption = Annotated[
    list[int] | None,
    typer.Option(help="--regenerate budgets to measure (repeatable; 0 skips)."),
]
SceneDataOption = Annotated[
    str,
    typer.Option(help="'shapes', or an emoji import (bcosdiff data emoji) for emoji scenes."),
]
