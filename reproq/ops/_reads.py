"""What the read modules share: argument checks with one wording, and row decoding."""

from __future__ import annotations

from typing import Any

from reproq.errors import UsageError

MAX_LIST_LIMIT = 10_000
"""The most rows one listing call returns."""


def require_positive(name: str, value: int, *, most: int | None = None) -> None:
    """Raise :class:`UsageError` unless ``value`` is an integer from 1 to ``most``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
    if most is not None and value > most:
        raise UsageError(f"{name} must be at most {most}, got {value}")


def str_tuple(value: Any) -> tuple[str, ...]:
    """A JSON array column as a tuple of text (anything else: empty)."""
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()
