"""What one generation asks for: a frozen, keyword-only request, checked in one place.

``RunRequest(prompt="a red circle", steps=25, seed=0)`` is what
:meth:`~bcosdiff.pipeline.Pipeline.run` samples; :meth:`~bcosdiff.pipeline.Pipeline.generate`,
:func:`~bcosdiff.service.explain_prompt`, the CLI, the viewer and the evaluation build one.
Everything that can be checked without the model is checked on construction; the bounds that
depend on the model (the number of training time steps) by :meth:`RunRequest.check_for`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .diffusion import DDIMSchedule, check_guidance
from .errors import BcosdiffError

__all__ = ["MAX_SEED", "RunRequest", "batch_requests", "check_generation_args", "shorten"]

MAX_SEED = 2**63 - 1


def check_generation_args(prompt: str, steps: int, seed: int, max_steps: int | None = None) -> None:
    """Reject an empty prompt, steps outside ``[1, max_steps]`` and seeds outside ``[0, 2^63)``."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise BcosdiffError("the prompt is empty")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:  # undecodable command-line bytes arrive as lone surrogates
        raise BcosdiffError("the prompt is not valid UTF-8 text") from None
    if steps < 1 or (max_steps is not None and steps > max_steps):
        bound = f"between 1 and {max_steps}" if max_steps is not None else "at least 1"
        raise BcosdiffError(f"steps must be {bound}, got {steps}")
    if not 0 <= seed <= MAX_SEED:
        raise BcosdiffError(f"seed must be between 0 and {MAX_SEED}, got {seed}")


def shorten(prompt: str, limit: int = 40) -> str:
    """``prompt`` cut to ``limit`` characters (an ellipsis marks the cut), for messages."""
    return prompt if len(prompt) <= limit else prompt[: limit - 1] + "…"


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """One image to sample. ``schedule`` replaces the ``steps`` uniformly spaced DDIM steps;
    ``guidance=None`` is the model's default scale; ``steering`` adds a dictionary feature
    (:mod:`bcosdiff.dictionary.steering`); ``eta > 0`` injects fresh noise between steps."""

    prompt: str
    steps: int = 25
    seed: int = 0
    eta: float = 0.0
    guidance: float | None = None
    schedule: DDIMSchedule | None = None
    steering: object | None = None  # a Steering (imported lazily: it needs torch modules)

    def __post_init__(self) -> None:
        check_generation_args(self.prompt, self.step_count, self.seed)
        if not self.eta >= 0:
            raise BcosdiffError(f"eta must be at least 0, got {self.eta}")
        if self.guidance is not None:
            try:
                object.__setattr__(self, "guidance", check_guidance(self.guidance))
            except ValueError as exc:
                raise BcosdiffError(str(exc)) from None

    @property
    def step_count(self) -> int:
        return len(self.schedule) if self.schedule is not None else self.steps

    def check_for(self, max_steps: int) -> RunRequest:
        """The request, checked against a model with ``max_steps`` training time steps."""
        check_generation_args(self.prompt, self.step_count, self.seed, max_steps)
        return self

    def with_seed(self, seed: int) -> RunRequest:
        return replace(self, seed=seed)


def batch_requests(
    prompts: Sequence[str], seeds: Sequence[int], *, steps: int, guidance: float | None = None
) -> list[RunRequest]:
    """One request per prompt, prompt ``i`` with seed ``seeds[i]``, sharing the rest: what
    :meth:`~bcosdiff.pipeline.Pipeline.sample_batch` samples at once."""
    if len(prompts) != len(seeds):
        raise ValueError("one seed per prompt is needed")
    return [
        RunRequest(prompt=p, steps=steps, seed=s, guidance=guidance)
        for p, s in zip(prompts, seeds, strict=True)
    ]
