"""What the command line, the viewer and the evaluation share: choosing a method for a
model, checking a steering request against it, generating or explaining one request
(regenerating until no content word is flagged or misbound) and explaining one run with
several methods."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BcosdiffError
from .request import MAX_SEED, RunRequest, shorten

if TYPE_CHECKING:
    from PIL import Image

    from .dictionary.steering import Steering
    from .diffusion import DDIMSchedule
    from .explain import Explanation, GeneratedRun

__all__ = [
    "check_explainable",
    "default_method",
    "explain_methods",
    "explain_prompt",
    "explain_request",
    "generate_request",
    "Generated",
    "kept_attempt",
    "read_steering",
    "steering_for",
]


def default_method(pipe) -> str:
    """``"bcos"`` for B-cos models; cross-attention maps (DAAM) for any other."""
    return "bcos" if pipe.unet.config.kind == "bcos" else "xattn"


def read_steering(dictionary: Path | None, steer: str | None):
    """``(stored dictionary, feature, strength)`` of ``--dictionary`` and ``--steer``, or
    None; checked before any model loads."""
    if steer is None and dictionary is None:
        return None
    if steer is None or dictionary is None:
        raise BcosdiffError("--steer and --dictionary go together")
    from .dictionary.store import load_dictionary
    from .dictionary.workflow import parse_steer

    feature, strength = parse_steer(steer)
    stored = load_dictionary(dictionary)
    stored.direction(feature)  # an unknown feature fails here
    return stored, feature, strength


def steering_for(pipe, steering_request):
    """The :class:`~bcosdiff.dictionary.steering.Steering` of a :func:`read_steering` result
    for ``pipe``'s U-Net (its site and width checked), or None."""
    if steering_request is None:
        return None
    from .dictionary.steering import check_steering
    from .dictionary.workflow import steering_from

    stored, feature, strength = steering_request
    steering = steering_from(stored, feature, strength)
    try:
        check_steering(pipe.unet, steering)
    except ValueError as exc:
        raise BcosdiffError(f"the dictionary does not fit this model: {exc}") from None
    return steering


def check_explainable(pipe, request: RunRequest, regenerate: int = 0) -> None:
    """Reject what no method can explain (a prompt without tokens, seeds past the last one);
    warn that ``eta > 0`` leaves part of the run unexplained."""
    if regenerate < 0:
        raise BcosdiffError(f"regenerate must be at least 0, got {regenerate}")
    if bool(pipe.text.tokenize([request.prompt])["special_tokens_mask"].all()):
        raise BcosdiffError(
            f"the prompt {shorten(request.prompt)!r} has no tokens to explain: the tokenizer "
            "keeps none of its characters"
        )
    if request.seed + regenerate > MAX_SEED:
        raise BcosdiffError(f"seed + regenerate must not exceed {MAX_SEED}")
    if request.eta > 0:
        warnings.warn(
            "eta > 0 injects noise between steps that no source explains: the explanation is "
            "incomplete",
            stacklevel=4,
        )


def explain_prompt(
    pipe,
    prompt: str | RunRequest,
    *,
    method: str = "bcos",
    options=None,
    regenerate: int = 0,
    progress: Callable[[int, int], None] | None = None,
    steps: int = 25,
    seed: int = 0,
    eta: float = 0.0,
    guidance: float | None = None,
    schedule: DDIMSchedule | None = None,
    steering: Steering | None = None,
) -> Explanation:
    """Generate and explain: the :class:`~bcosdiff.explain.Explanation` of one image.

    ``prompt`` is a :class:`~bcosdiff.request.RunRequest`, or a prompt with the request
    options of :meth:`bcosdiff.Pipeline.request` (``steps``, ``seed``, ``eta``, ``guidance``,
    ``schedule``, ``steering``). ``method`` names an attribution method
    (:data:`bcosdiff.explain.METHODS`): the B-cos explanation ``"bcos"`` (default; B-cos
    models only) or a post-hoc one (``"xattn"``, ``"gradxinput"``, ``"dfrise"``,
    ``"dfcam"``; any model). ``options`` are that method's options (``Method.Options``, e.g.
    :class:`~bcosdiff.explain.BcosOptions` with ``sources=True``). ``regenerate=N`` retries
    with seeds ``seed + 1 … seed + N`` while a word is flagged or misbound
    (:func:`explain_request`, which this calls). ``progress(done, total)`` is called after
    each step. With ``eta > 0`` fresh noise enters between steps; the explanation then covers
    only part of the computation and says so (``complete`` is False, with a warning)."""
    request = pipe.request(
        prompt,
        steps=steps,
        seed=seed,
        eta=eta,
        guidance=guidance,
        schedule=schedule,
        steering=steering,
    )
    return explain_request(
        pipe, request, method=method, options=options, regenerate=regenerate, progress=progress
    )


def explain_request(
    pipe,
    request: RunRequest,
    *,
    method: str = "bcos",
    options=None,
    regenerate: int = 0,
    progress: Callable[[int, int], None] | None = None,
):
    """The :class:`~bcosdiff.explain.Explanation` of ``request`` by ``method`` with
    ``options`` (that method's options class; default its defaults).

    Regenerate policy: with ``regenerate=N`` (only for methods that flag words) the seeds
    ``seed, seed + 1 … seed + N`` are tried in turn until one has no finding: no flagged
    content word (:func:`~bcosdiff.explain.tokens.flag_words`) and no misbound word
    (:mod:`bcosdiff.explain.binding`). Flagged words that never occur in the model's training
    captions (``exp.unknown_words``) are no finding: no seed can draw a word the model never
    learned. The first such attempt is returned, else the attempt
    with the fewest findings (the earliest among equals). ``exp.attempts`` lists every
    ``(seed, flagged words, misbound words)`` tried.
    Methods that read the sampled states get a sampled run; the others (B-cos) replay the run
    from its inputs, so each attempt is sampled once either way."""
    from .explain.registry import get_method

    explainer = get_method(method)(pipe, options)
    if regenerate and not explainer.flags_words:
        raise BcosdiffError(f"regenerate needs a method that flags words; {method!r} flags none")
    check_explainable(pipe, request, regenerate)
    options = explainer.with_progress(explainer.options, progress)
    explained = []
    for seed in range(request.seed, request.seed + regenerate + 1):
        attempt = request.with_seed(seed)
        if explainer.needs_sample:
            run = pipe.run(attempt, progress=progress)
        else:
            run = pipe.prepare_run(attempt)
        explained.append(explainer.attribute(run, options))
        if not explained[-1].findings:
            break
    best = explained[kept_attempt([len(e.findings) for e in explained])]
    best.attempts = [e.attempts[0] for e in explained]
    return best


def kept_attempt(findings: Sequence[int]) -> int:
    """The regenerate policy's choice among attempts with ``findings[i]`` findings each, in
    the order they were tried: the first without any, else the one with the fewest (the
    earliest among equals). :func:`explain_request` and the binding study
    (:func:`bcosdiff.evaluation.binding.regeneration_success`) both keep what this says."""
    clean = [i for i, n in enumerate(findings) if n == 0]
    return clean[0] if clean else min(range(len(findings)), key=findings.__getitem__)


@dataclass(frozen=True, kw_only=True)
class Generated:
    """The image kept for a request: ``run`` is its sampled run (every step's state), and
    ``explanation`` the kept attempt's scores-only explanation when regenerating (its
    ``attempts`` list every seed tried), else None."""

    run: GeneratedRun | None
    explanation: Explanation | None = None

    @property
    def image(self) -> Image.Image:
        return self.explanation.image if self.run is None else self.run.image


def generate_request(
    pipe,
    request: RunRequest,
    *,
    regenerate: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Generated:
    """Sample ``request`` once, or with ``regenerate=N`` try the seeds ``seed … seed + N``
    under the model's own method (scores only) until one has no finding, as
    :func:`explain_request` does."""
    if not regenerate:
        return Generated(run=pipe.run(request, progress=progress))
    from .explain.methods import SCORES_ONLY

    method = default_method(pipe)
    options = SCORES_ONLY if method == "bcos" else None
    explanation = explain_request(
        pipe, request, method=method, options=options, regenerate=regenerate, progress=progress
    )
    return Generated(run=None, explanation=explanation)


def explain_methods(
    pipe,
    request: RunRequest,
    methods: Sequence[str],
    *,
    regenerate: int = 0,
    options: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """``{method: Explanation}`` of one image, sampled once: the first method chooses the seed
    (with ``regenerate``, :func:`explain_request`); every other method explains the sampled
    run of the seed it kept. ``options`` maps method names to their options."""
    from .explain.registry import get_method

    options = options or {}
    explainers = {name: get_method(name)(pipe, options.get(name)) for name in methods}
    if regenerate:
        first = explain_request(
            pipe,
            request,
            method=methods[0],
            options=options.get(methods[0]),
            regenerate=regenerate,
            progress=progress,
        )
        if len(methods) == 1:
            return {methods[0]: first}
        request = request.with_seed(first.seed)
    else:
        check_explainable(pipe, request)
    run = pipe.run(request, progress=progress)
    views = {}
    for name, explainer in explainers.items():
        views[name] = first if regenerate and name == methods[0] else explainer.attribute(run)
        if regenerate:
            views[name].attempts = first.attempts
    return views
