"""Injected time: the real clock and a fake one that tests move by hand.

Everything that reasons about "now" (leases, beat, the TUI) takes a :class:`Clock`, so
tests can be exact instead of sleeping and hoping.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """A source of the current instant and a way to wait."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (nothing happens for zero or negative values)."""
        ...


class SystemClock:
    """The wall clock of this machine."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


class FakeClock:
    """A clock that only moves when told to; :meth:`sleep` advances it instead of blocking.

    Thread-safe, so one test thread can move time while another reads it.
    """

    def __init__(self, start: datetime) -> None:
        self._now = _as_utc(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The fake current instant (aware, UTC)."""
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` without blocking."""
        self.advance(seconds)

    def advance(self, seconds: float) -> datetime:
        """Move forward by ``seconds`` (never backwards) and return the new instant."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds} s)")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, dt: datetime) -> None:
        """Jump to ``dt`` (aware; any direction, to model a wall-clock step)."""
        new = _as_utc(dt)
        with self._lock:
            self._now = new

    def __repr__(self) -> str:
        return f"FakeClock({self.now().isoformat()})"


def _as_utc(dt: datetime) -> datetime:
    """``dt`` converted to UTC; naive values are refused because their zone is a guess."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {dt.isoformat()}")
    return dt.astimezone(UTC)
