"""Strict configuration records: dataclasses read from plain dicts (JSON/YAML/TOML)."""

from __future__ import annotations

from dataclasses import MISSING, asdict, fields
from typing import Any, ClassVar, TypeVar

__all__ = ["ConfigRecord"]

T = TypeVar("T", bound="ConfigRecord")


class ConfigRecord:
    """Mixin for dataclasses: ``from_dict`` rejects unknown keys and values of the wrong
    type, ``to_dict`` is JSON-ready.

    A value must have the type of its field's default: an integer (not a boolean) for an
    integer field, a number for a float field, a list of such for a tuple field, a mapping
    for a dict field (fields whose default is None are not checked here). ``config_name``
    names the section in error messages; ``config_error`` is the exception type raised.
    """

    config_name: ClassVar[str] = "config"
    config_error: ClassVar[type[Exception]] = ValueError

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})  # type: ignore[arg-type]
        if unknown:
            raise cls.config_error(f"unknown {cls.config_name} config keys: {', '.join(unknown)}")
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                problem = _type_problem(data[f.name], _default(f))
                if problem:
                    raise cls.config_error(
                        f"{cls.config_name} config key {f.name!r} must be {problem}, "
                        f"got {data[f.name]!r}"
                    )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}  # type: ignore[call-overload]


def _default(f) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def _is_number(value: Any, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integer else isinstance(value, int | float)


def _type_problem(value: Any, default: Any) -> str | None:
    """What ``value`` should be, judged by the field's ``default``; None when it fits."""
    if default is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if _is_number(value, True) else "an integer"
    if isinstance(default, float):
        return None if _is_number(value, False) else "a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "text"
    if isinstance(default, dict):
        return None if isinstance(value, dict) else "a mapping"
    if isinstance(default, tuple):
        integer = all(isinstance(v, int) and not isinstance(v, bool) for v in default)
        kind = "integers" if integer else "numbers"
        if not isinstance(value, list | tuple) or not all(_is_number(v, integer) for v in value):
            return f"a list of {kind}"
    return None
