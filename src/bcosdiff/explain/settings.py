"""What a model directory says about explaining the model: the ``explain`` section of its
``config.json``, read and checked in one place.

Calibration commands write it (``bcosdiff eval flags --write``, ``eval binding --write``),
``bcosdiff export`` lists the training captions' words and compound names, and every
explanation of the model reads it. The section may also keep records of how its numbers were
chosen (``calibration``, ``binding_calibration``, ``flag_ratio_source``); those are
provenance, not settings, and are not read here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .binding import DEFAULT_STRAY_LIMIT
from .tokens import DEFAULT_FLAG_RATIO, FLAG_SIGNALS, WordRoles

__all__ = ["ExplainSettings"]


@dataclass(frozen=True)
class ExplainSettings:
    """``flag_ratio`` and ``flag_signal``: the failure-detection rule (:mod:`.tokens`);
    ``stray_limit``: the binding diagnostics' limit (:mod:`.binding`); ``compounds``:
    multi-word names kept in one phrase (:mod:`.phrases`); ``vocabulary``: the words of the
    training captions, lower-cased (None: not known; :func:`.tokens.unknown_words`);
    ``depicting``: those of them that name or describe what is drawn (object names and
    keywords, colours, shapes, sizes, positions, styles), the only words the flagging rule
    reads as peers and phrases hold (None: not known, every content word;
    :class:`.tokens.WordRoles`)."""

    flag_ratio: float = DEFAULT_FLAG_RATIO
    flag_signal: str = "relevance"
    stray_limit: float = DEFAULT_STRAY_LIMIT
    compounds: tuple[str, ...] = ()
    vocabulary: frozenset[str] | None = field(default=None)
    depicting: frozenset[str] | None = field(default=None)

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(problem)
        object.__setattr__(self, "flag_ratio", float(self.flag_ratio))
        object.__setattr__(self, "stray_limit", float(self.stray_limit))
        object.__setattr__(self, "compounds", tuple(self.compounds))
        for name in ("vocabulary", "depicting"):
            if getattr(self, name) is not None:
                words = frozenset(w.lower() for w in getattr(self, name))
                object.__setattr__(self, name, words)

    @property
    def word_roles(self) -> WordRoles:
        return WordRoles(depicting=self.depicting, vocabulary=self.vocabulary)

    @classmethod
    def from_section(cls, section: object) -> ExplainSettings:
        """The settings of a ``config.json`` ``explain`` section (missing keys: defaults);
        a :class:`ValueError` names the first bad key as ``explain.KEY``."""
        if not isinstance(section, dict):
            raise ValueError("bad 'explain' section: it must be a mapping")
        names = ("flag_ratio", "flag_signal", "stray_limit", "compounds", "vocabulary", "depicting")
        return cls(**{name: section[name] for name in names if name in section})


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _words(value: object) -> bool:
    return isinstance(value, list | tuple | frozenset | set) and all(
        isinstance(w, str) for w in value
    )


def _problem(settings: ExplainSettings) -> str | None:
    checks = {
        "flag_ratio": _is_number(settings.flag_ratio) and settings.flag_ratio >= 0,
        "flag_signal": settings.flag_signal in FLAG_SIGNALS,
        "stray_limit": _is_number(settings.stray_limit) and 0 <= settings.stray_limit <= 1,
        "compounds": _words(settings.compounds),
        "vocabulary": settings.vocabulary is None or _words(settings.vocabulary),
        "depicting": settings.depicting is None or _words(settings.depicting),
    }
    bad = [name for name, ok in checks.items() if not ok]
    return f"bad 'explain.{bad[0]}'" if bad else None
