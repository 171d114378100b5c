"""What the command line, the viewer and the evaluation share: choosing a method for a
model, checking a steering request against it, and explaining one run with several methods
(the first one may regenerate until no content word is flagged)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import BcosdiffError
from .request import RunRequest

__all__ = ["default_method", "explain_methods", "read_steering", "steering_for"]


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


def explain_methods(
    pipe,
    request: RunRequest,
    methods: Sequence[str],
    *,
    regenerate: int = 0,
    heatmaps: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """``{method: Explanation}`` of one image: the first method explains (and, with
    ``regenerate``, reseeds) the run; the others explain the run of the seed it kept."""
    from .explain.registry import get_method

    first = pipe.explain(
        request, regenerate=regenerate, method=methods[0], heatmaps=heatmaps, progress=progress
    )
    views = {methods[0]: first}
    if len(methods) > 1:
        run = pipe.run(request.with_seed(first.seed))
        for name in methods[1:]:
            views[name] = get_method(name)(pipe).attribute(run)
            views[name].attempts = first.attempts
    return views
