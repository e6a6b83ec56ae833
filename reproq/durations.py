"""Durations and points in time as people write them: ``30s``, ``5m``, ``1h30m``, ``+10m``.

Every duration in reproq (config values, ``--interval``, ``--lease-seconds``) goes
through :func:`parse_duration`, so the accepted forms are the same everywhere: a plain
number of seconds, or numbers with units ``ms``, ``s``, ``m``, ``h``, ``d`` that may be
combined (``1h30m``, ``1m 30.5s``). Upstream Go-style values such as ``100ms`` and
``1h0m0s`` are valid too.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from reproq.errors import UsageError

__all__ = [
    "MAX_DURATION_SECONDS",
    "DurationError",
    "format_duration",
    "parse_duration",
    "parse_when",
]

MAX_DURATION_SECONDS = 365_000 * 86_400.0
"""The longest duration accepted: 365000d, about 1,000 years.

Every duration ends up added to or taken from a moment (a timeout, a lease, ``+30s``, an
age filter, a prune cut-off), and Python's datetimes end at the year 9999: a thousand
years either way from now stays inside them, and inside PostgreSQL's timestamps, for
centuries to come, while no real setting comes near it.
"""

_UNIT_SECONDS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)\s*")
_HINT = "expected seconds or a number with a unit: 500ms, 30s, 5m, 1h, 7d, or combined like 1h30m"


class DurationError(UsageError, ValueError):
    """A duration or time could not be parsed.

    It is a :class:`~reproq.errors.UsageError` (exit code 2 from the CLI) and also a
    :class:`ValueError`, so it can serve directly as an argparse ``type=`` callable.
    """


def parse_duration(
    text: str | int | float, *, key: str = "", maximum: float | None = None
) -> float:
    """Seconds in *text*: a non-negative number of seconds or a string such as ``"1h30m"``.

    *key* names the setting or flag in the error message (``"worker.lease_seconds"``).
    Raises :class:`DurationError` for negative, non-finite or unreadable values, and for
    values over *maximum* seconds (by default :data:`MAX_DURATION_SECONDS`).
    """
    where = f"{key}: " if key else ""
    if isinstance(text, bool) or not isinstance(text, int | float | str):
        raise DurationError(f"{where}invalid duration {text!r}: {_HINT}")
    if isinstance(text, int | float):
        return _checked(float(text), text, where, maximum)
    stripped = text.strip()
    if stripped.startswith("-"):
        raise DurationError(f"{where}invalid duration {text!r}: must not be negative")
    if not stripped:
        raise DurationError(f"{where}invalid duration {text!r}: {_HINT}")
    if _NUMBER.fullmatch(stripped):
        return _checked(float(stripped), text, where, maximum)
    total = 0.0
    pos = 0
    while pos < len(stripped):
        match = _PART.match(stripped, pos)
        if match is None or match.end() == pos:
            raise DurationError(f"{where}invalid duration {text!r}: {_HINT}")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return _checked(total, text, where, maximum)


def _checked(seconds: float, original: object, where: str, maximum: float | None) -> float:
    if math.isnan(seconds) or math.isinf(seconds):
        raise DurationError(f"{where}invalid duration {original!r}: must be a finite number")
    if seconds < 0:
        raise DurationError(f"{where}invalid duration {original!r}: must not be negative")
    if maximum is not None and seconds > maximum:
        raise DurationError(
            f"{where}invalid duration {original!r}: must be at most {maximum:.0f} "
            f"({maximum / 86_400:g}d)"
        )
    if seconds > MAX_DURATION_SECONDS:
        raise DurationError(
            f"{where}invalid duration {original!r}: must be at most "
            f"{MAX_DURATION_SECONDS / 86_400:.0f}d (about 1000 years)"
        )
    return seconds


def parse_when(text: str, now: datetime, *, key: str = "") -> datetime:
    """The moment *text* names, as an aware UTC datetime.

    Accepts ISO 8601 (``2025-01-31T09:00:00+01:00``; a time without an offset is UTC),
    ``now``, or a duration relative to *now* written with a leading ``+`` (``+30s``,
    ``+1h30m``). A naive *now* is taken as UTC. *key* names the flag in error messages.
    """
    where = f"{key}: " if key else ""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    stripped = text.strip()
    if stripped.lower() == "now":
        return now.astimezone(UTC)
    if stripped.startswith("+"):
        offset = timedelta(seconds=parse_duration(stripped[1:], key=key))
        return (now + offset).astimezone(UTC)
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise DurationError(
            f"{where}invalid time {text!r}: expected ISO 8601 (2025-01-31T09:00:00Z), "
            "'now', or a relative time like +30s"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_duration(seconds: float) -> str:
    """A short human form of *seconds* that :func:`parse_duration` reads back.

    ``0.25`` → ``"250ms"``, ``90`` → ``"1m30s"``, ``5400`` → ``"1h30m"``, ``604800`` → ``"7d"``.
    """
    if seconds < 0:
        return "-" + format_duration(-seconds)
    # Rounding to the millisecond first keeps 119.9999 from becoming "1m60s".
    seconds = round(seconds, 3)
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{_trim(seconds * 1000)}ms"
    parts: list[str] = []
    remaining = seconds
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        count = int(remaining // size)
        if count:
            parts.append(f"{count}{unit}")
            remaining -= count * size
    remaining = round(remaining, 3)
    if remaining or not parts:
        parts.append(f"{_trim(remaining)}s")
    return "".join(parts)


def _trim(value: float) -> str:
    """*value* with at most three decimals and no trailing zeros."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"
