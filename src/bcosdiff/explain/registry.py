"""The attribution methods by name: one explicit table, filled when this module is read.

``bcosdiff explain --method NAME``, :func:`~bcosdiff.service.explain_prompt` and the
faithfulness benchmark look methods up here. :func:`register_method` adds a method of one's
own (tests use it for oracles).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BcosdiffError
from .gradcam import CamOptions, DFCam
from .methods import (
    AttributionMethod,
    AttributionOptions,
    BcosAttribution,
    BcosOptions,
    GradientInput,
)
from .readouts import DEFAULT_READOUT, READOUTS
from .rise import DFRise
from .xattn import CrossAttentionMaps

__all__ = [
    "METHODS",
    "Preset",
    "get_method",
    "is_bcos_method",
    "method_class",
    "posthoc_methods",
    "register_method",
    "word_map_methods",
]


@dataclass(frozen=True)
class Preset:
    """A method class with other default options: ``Preset(cls, defaults)(pipe, options)``
    builds ``cls(pipe, options or defaults)``."""

    method: type[AttributionMethod]
    defaults: AttributionOptions

    def __call__(self, pipe, options: AttributionOptions | None = None) -> AttributionMethod:
        return self.method(pipe, self.defaults if options is None else options)


METHODS: dict[str, Callable[..., AttributionMethod]] = {
    "bcos": BcosAttribution,
    **{
        f"bcos-{readout}": Preset(BcosAttribution, BcosOptions(readout=readout))
        for readout in READOUTS
        if readout != DEFAULT_READOUT
    },
    "gradxinput": GradientInput,
    "xattn": CrossAttentionMaps,
    "dfrise": DFRise,
    "dfcam": DFCam,
    "dfcam-output": Preset(DFCam, CamOptions(score="output")),
}
"""Method name -> ``factory(pipe, options=None)``: a method class or a :class:`Preset`. The
``bcos-*`` entries are B-cos whose default options read the maps out another way;
``dfcam-output`` is DF-CAM with the authors' score (the summed network output)."""


def register_method(name: str, factory: Callable[..., AttributionMethod]) -> None:
    """Make ``factory(pipe, options=None)`` available by ``name``
    (``bcosdiff.explain_prompt(…, method=…)``, the CLI and ``eval faithfulness``)."""
    METHODS[name] = factory


def get_method(name: str) -> Callable[..., AttributionMethod]:
    if name not in METHODS:
        raise BcosdiffError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}")
    return METHODS[name]


def is_bcos_method(name: str) -> bool:
    target = method_class(name)
    return isinstance(target, type) and issubclass(target, BcosAttribution)


def method_class(name: str) -> type[AttributionMethod]:
    """The method class behind ``name`` (a :class:`Preset`'s class for preset entries)."""
    factory = get_method(name)
    return factory.method if isinstance(factory, Preset) else factory


def word_map_methods() -> list[str]:
    """The methods that give one map per prompt word (binding diagnostics need them)."""
    return [name for name in METHODS if getattr(method_class(name), "maps_words", True)]


def posthoc_methods() -> list[str]:
    return [name for name in METHODS if not is_bcos_method(name)]
