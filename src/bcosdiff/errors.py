"""Exceptions that carry a message meant for the user (the CLI prints them on one line)."""

from __future__ import annotations

__all__ = ["BcosdiffError", "ModelLoadError"]


class BcosdiffError(Exception):
    """An error caused by the user's input; its message is complete and printable."""


class ModelLoadError(BcosdiffError):
    """A model directory is missing, incomplete, corrupt or inconsistent."""
