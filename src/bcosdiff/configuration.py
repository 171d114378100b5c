"""Strict configuration records: dataclasses read from plain dicts (JSON/YAML/TOML)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, ClassVar, TypeVar

__all__ = ["ConfigRecord"]

T = TypeVar("T", bound="ConfigRecord")


class ConfigRecord:
    """Mixin for dataclasses: ``from_dict`` rejects unknown keys, ``to_dict`` is JSON-ready.

    ``config_name`` names the section in error messages; ``config_error`` is the exception
    type raised for unknown keys.
    """

    config_name: ClassVar[str] = "config"
    config_error: ClassVar[type[Exception]] = ValueError

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})  # type: ignore[arg-type]
        if unknown:
            raise cls.config_error(f"unknown {cls.config_name} config keys: {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}  # type: ignore[call-overload]
