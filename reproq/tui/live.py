"""Keeping the screens current: change notifications, debounced re-queries, polling.

Two pieces, both free of Textual so they can be reasoned about (and tested) alone:

- :class:`RefreshPlanner` decides *when* the visible screen re-reads its data. A change
  notification marks the data stale and the re-query follows after a short debounce;
  without notifications it polls every ~2 s. Only one refresh is ever in flight, a
  frozen planner never starts one by itself, and a database that went away is retried
  every couple of seconds until it answers again.
- :func:`listen_loop` runs in a worker thread on the dedicated LISTEN connection of the
  data source and reports what it sees through a callback.

Time comes from the injected :class:`~reproq.clock.Clock`, so with a fake clock nothing
refreshes unless a test asks for it.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from reproq.errors import DatabaseError

__all__ = [
    "LinkState",
    "ListenEvent",
    "Listener",
    "RefreshPlanner",
    "listen_loop",
]


class LinkState(StrEnum):
    """What the connection indicator shows."""

    CONNECTING = "connecting"
    """No refresh has finished yet."""
    LIVE = "live"
    """Notifications arrive; screens re-query when something changes."""
    POLLING = "polling"
    """Notifications are unavailable; screens re-query every few seconds."""
    PAUSED = "paused"
    """Automatic refresh is frozen by the user."""
    DOWN = "down"
    """The database does not answer; retrying."""


class ListenEvent(StrEnum):
    """What :func:`listen_loop` reports."""

    UP = "up"
    """The LISTEN connection is open (after a start or a reconnect)."""
    CHANGED = "changed"
    """Something changed in the queue."""
    LOST = "lost"
    """The LISTEN connection failed or could not be opened; it is retried."""
    UNSUPPORTED = "unsupported"
    """The source has no notifications at all (the loop ends)."""


class Listener(Protocol):
    """A source of change notifications (one blocking waiter)."""

    def wait(self, timeout: float) -> list[str]:
        """Block up to ``timeout`` s; what changed meanwhile (empty: nothing)."""
        ...

    def close(self) -> None:
        """Stop listening."""
        ...


def listen_loop(
    open_listener: Callable[[], Listener | None],
    stop: threading.Event,
    emit: Callable[[ListenEvent], object],
    *,
    wait_seconds: float = 0.5,
    retry_seconds: float = 2.0,
) -> None:
    """Listen until ``stop`` is set, reopening the listener whenever it is lost.

    ``open_listener`` returns None when the source cannot notify at all; it raises
    :class:`DatabaseError` when it cannot right now. Meant for a worker thread.
    """
    while not stop.is_set():
        try:
            listener = open_listener()
        except DatabaseError:
            emit(ListenEvent.LOST)
            stop.wait(retry_seconds)
            continue
        if listener is None:
            emit(ListenEvent.UNSUPPORTED)
            return
        emit(ListenEvent.UP)
        try:
            while not stop.is_set():
                if listener.wait(wait_seconds):
                    emit(ListenEvent.CHANGED)
        except DatabaseError:
            emit(ListenEvent.LOST)
            stop.wait(retry_seconds)
        finally:
            listener.close()


@dataclass(kw_only=True, slots=True)
class RefreshPlanner:
    """When to re-read the visible screen's data.

    The app sets a timer for :meth:`delay`, checks :meth:`due` when it fires and reports
    back with :meth:`started` and :meth:`finished`; notifications and user actions call
    :meth:`mark_stale` (and plan again).
    """

    debounce: float = 0.3
    """Seconds between the first change notification of a burst and the re-query."""
    poll_interval: float = 2.0
    """Re-query period without notifications."""
    live_interval: float = 5.0
    """Re-query period with notifications. They only announce rows becoming READY, so
    completions and failures are picked up by this slower sweep."""
    min_gap: float = 0.5
    """Least time between two refreshes, so a storm of notifications cannot hog the
    database."""
    down_retry: float = 2.0
    """Seconds between attempts while the database is down."""

    listening: bool = False
    frozen: bool = False
    down: bool = False
    in_flight: bool = False
    stale_since: dt.datetime | None = None
    forced: bool = False
    last_started: dt.datetime | None = None
    last_finished: dt.datetime | None = None
    last_success: dt.datetime | None = None

    @property
    def state(self) -> LinkState:
        """The indicator to show."""
        if self.frozen:
            return LinkState.PAUSED
        if self.down:
            return LinkState.DOWN
        if self.last_success is None:
            return LinkState.CONNECTING
        return LinkState.LIVE if self.listening else LinkState.POLLING

    def mark_stale(self, now: dt.datetime, *, immediate: bool = False) -> None:
        """Something changed: re-query soon (``immediate``: at the next check, even frozen).

        ``immediate`` is for things the user did (switching screens, an action, asking
        for a refresh); those show their effect even while refresh is frozen.
        """
        if immediate:
            self.forced = True
        if self.stale_since is None:
            self.stale_since = now

    def delay(self, now: dt.datetime) -> float | None:
        """Seconds until the next refresh is due (0: now), None while none will be.

        None while a refresh is in flight (its end plans the next) and while frozen.
        """
        if self.in_flight:
            return None
        if self.forced or self.last_started is None:
            return 0.0
        if self.frozen:
            return None
        since_start = _seconds(now, self.last_started)
        if since_start < 0:
            return 0.0  # the wall clock stepped back: do not wait for it to catch up
        if self.down:
            return max(0.0, self.down_retry - since_start)
        period = self.live_interval if self.listening else self.poll_interval
        wait = period - since_start
        if self.stale_since is not None:
            debounced = self.debounce - _seconds(now, self.stale_since)
            wait = min(wait, max(debounced, self.min_gap - since_start))
        return max(0.0, wait)

    def due(self, now: dt.datetime) -> bool:
        """Whether a refresh should start now."""
        return self.delay(now) == 0.0

    def started(self, now: dt.datetime) -> None:
        """A refresh has been started; the staleness it covers is cleared."""
        self.in_flight = True
        self.forced = False
        self.stale_since = None
        self.last_started = now

    def finished(self, now: dt.datetime, *, ok: bool, down: bool = False) -> None:
        """The refresh ended; ``down`` when the database could not be reached."""
        self.in_flight = False
        self.last_finished = now
        self.down = down
        if ok:
            self.last_success = now

    def listener_event(self, event: ListenEvent, now: dt.datetime) -> None:
        """Track the LISTEN connection; a (re)opened one may have missed changes."""
        if event is ListenEvent.UP:
            self.listening = True
            self.mark_stale(now)
        elif event is ListenEvent.CHANGED:
            self.mark_stale(now)
        else:
            self.listening = False


def _seconds(later: dt.datetime, earlier: dt.datetime) -> float:
    return (later - earlier).total_seconds()
