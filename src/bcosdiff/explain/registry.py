"""The attribution methods by name: one explicit table, filled when this module is read.

``bcosdiff explain --method NAME``, :meth:`~bcosdiff.pipeline.Pipeline.explain` and the
faithfulness benchmark look methods up here. :func:`register_method` adds a method of one's
own (tests use it for oracles).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ..errors import BcosdiffError
from .gradcam import DFCam
from .methods import AttributionMethod, BcosAttribution, GradientInput
from .readouts import DEFAULT_READOUT, READOUTS
from .rise import DFRise
from .xattn import CrossAttentionMaps

__all__ = ["METHODS", "get_method", "is_bcos_method", "posthoc_methods", "register_method"]

METHODS: dict[str, Callable[..., AttributionMethod]] = {
    "bcos": BcosAttribution,
    **{
        f"bcos-{readout}": partial(BcosAttribution, readout=readout)
        for readout in READOUTS
        if readout != DEFAULT_READOUT
    },
    "gradxinput": GradientInput,
    "xattn": CrossAttentionMaps,
    "dfrise": DFRise,
    "dfcam": DFCam,
}
"""Method name -> ``factory(pipe)``. The ``bcos-*`` entries are B-cos with another read-out."""


def register_method(name: str, factory: Callable[..., AttributionMethod]) -> None:
    """Make ``factory(pipe)`` available by ``name`` (``Pipeline.explain(method=…)``, the CLI
    and ``eval faithfulness``)."""
    METHODS[name] = factory


def get_method(name: str) -> Callable[..., AttributionMethod]:
    if name not in METHODS:
        raise BcosdiffError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}")
    return METHODS[name]


def is_bcos_method(name: str) -> bool:
    factory = get_method(name)
    target = factory.func if isinstance(factory, partial) else factory
    return isinstance(target, type) and issubclass(target, BcosAttribution)


def posthoc_methods() -> list[str]:
    return [name for name in METHODS if not is_bcos_method(name)]
