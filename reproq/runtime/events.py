"""Task events of one process, as the ``/events`` server-sent-events stream serves them.

The events and their JSON are Reproq Worker's, so reproq-django's dashboard (which
proxies ``/events``) and its TUI read them unchanged. One event is one line
``data: {json}`` followed by a blank line; the JSON object has:

- ``ts``: when it happened (RFC 3339, UTC, nanosecond digits as Go writes them),
- ``level``: ``info``, ``warn`` or ``error``,
- ``type`` and ``msg``: see :class:`EventType`,
- ``queue``, ``task_id``, ``worker_id`` (left out when empty or zero),
- ``metadata``: string values: ``task_path``, ``attempt``, ``max_attempts``, ``role``
  (``$REPROQ_PROCESS_ROLE``, default ``worker``) and, by type, ``reason``,
  ``exception_class``, ``error_message``, ``next_run``.

An :class:`EventBroker` keeps the last 200 events: a new subscriber receives those first,
then live ones. A subscriber that cannot keep up loses events (its queue holds 50) rather
than slowing the workers down.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from reproq.models import ErrorKind, TaskStatus

if TYPE_CHECKING:
    from reproq.engine.claim import ClaimedRow
    from reproq.engine.completion import Completion

__all__ = [
    "BUFFER_SIZE",
    "SUBSCRIBER_QUEUE",
    "Event",
    "EventBroker",
    "EventFilter",
    "EventType",
    "Subscription",
    "finished_event",
    "process_role",
    "started_event",
    "task_path_of",
]

BUFFER_SIZE = 200
"""Events kept for new subscribers."""

SUBSCRIBER_QUEUE = 50
"""Live events a subscriber may lag behind before it misses some."""


class EventType(StrEnum):
    """Reproq Worker's event types (with its level and message for each)."""

    TASK_STARTED = "task_started"
    """info, "task started": the attempt is handed to the executor."""
    TASK_SUCCESS = "task_success"
    """info, "task completed"."""
    TASK_RETRY = "task_retry"
    """warn, "task failed; retrying" (``next_run`` in the metadata)."""
    TASK_FAILED = "task_failed"
    """error, "task failed": no attempts left, or an error that never retries."""
    TASK_CANCELLED = "task_cancelled"
    """warn, "task cancelled by request"."""
    TASK_REJECTED = "task_rejected"
    """warn, "task rejected by validator": the path is not in ``allowed_task_modules``."""
    TASK_INVALID = "task_invalid"
    """error, "invalid task spec"."""
    TASK_INFRA_ERROR = "task_infra_error"
    """error, "execution infrastructure error" (timeout, spawn failure, oversized payload)."""


def process_role() -> str:
    """The ``role`` of this process's events: ``$REPROQ_PROCESS_ROLE``, else ``worker``."""
    return os.environ.get("REPROQ_PROCESS_ROLE", "").strip() or "worker"


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """One event of the stream."""

    type: str
    level: str
    message: str
    queue: str = ""
    task_id: int = 0
    worker_id: str = ""
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        """The JSON object, with Reproq Worker's keys (empty fields left out like Go's)."""
        doc: dict[str, Any] = {
            "ts": _go_time(self.at),
            "level": self.level,
            "type": self.type,
            "msg": self.message,
        }
        if self.queue:
            doc["queue"] = self.queue
        if self.task_id:
            doc["task_id"] = self.task_id
        if self.worker_id:
            doc["worker_id"] = self.worker_id
        if self.metadata:
            doc["metadata"] = dict(self.metadata)
        return doc

    def to_sse(self) -> bytes:
        """The event as one server-sent-events message."""
        text = json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)
        return f"data: {text}\n\n".encode()


def _go_time(at: datetime) -> str:
    """RFC 3339 with the fraction's trailing zeros dropped, as Go's time.Time marshals."""
    at = at.astimezone(UTC)
    text = at.strftime("%Y-%m-%dT%H:%M:%S")
    if at.microsecond:
        text += "." + f"{at.microsecond:06d}".rstrip("0")
    return text + "Z"


def started_event(worker_id: str, row: ClaimedRow, task_path: str) -> Event:
    """``task_started``: the attempt of *row* is handed to the executor."""
    return _task_event(
        EventType.TASK_STARTED,
        "info",
        "task started",
        worker_id=worker_id,
        row=row,
        task_path=task_path,
    )


# Failure kinds whose event is not task_failed / task_retry.
_KIND_EVENTS: dict[str, tuple[EventType, str, str]] = {
    ErrorKind.CANCELLED: (EventType.TASK_CANCELLED, "warn", "task cancelled by request"),
    ErrorKind.SECURITY_VIOLATION: (EventType.TASK_REJECTED, "warn", "task rejected by validator"),
    ErrorKind.INVALID_SPEC: (EventType.TASK_INVALID, "error", "invalid task spec"),
    ErrorKind.INFRA_ERROR: (EventType.TASK_INFRA_ERROR, "error", "execution infrastructure error"),
}
_REASONS: dict[str, str] = {ErrorKind.CANCELLED: "cancel_requested"}


def finished_event(
    worker_id: str, row: ClaimedRow, completion: Completion, task_path: str
) -> Event:
    """The event of a recorded attempt: success, retry, failure, cancel, rejection, ..."""
    if completion.status == TaskStatus.SUCCESSFUL:
        return _task_event(
            EventType.TASK_SUCCESS,
            "info",
            "task completed",
            worker_id=worker_id,
            row=row,
            task_path=task_path,
        )
    error = _error_entry(completion.error_json)
    kind = str(error.get("kind") or "")
    extra: dict[str, str] = {}
    if kind in _KIND_EVENTS:
        event_type, level, message = _KIND_EVENTS[kind]
        extra["reason"] = _REASONS.get(kind, kind)
    elif completion.status == TaskStatus.READY:
        event_type, level, message = EventType.TASK_RETRY, "warn", "task failed; retrying"
    else:
        event_type, level, message = EventType.TASK_FAILED, "error", "task failed"
        if kind and kind != ErrorKind.APP_ERROR:
            extra["reason"] = kind
    if event_type in (EventType.TASK_RETRY, EventType.TASK_FAILED):
        extra["exception_class"] = str(error.get("exception_class") or "")
    if completion.status == TaskStatus.READY:
        next_run = datetime.now(UTC) + timedelta(seconds=completion.delay_seconds)
        extra["next_run"] = _go_time(next_run)
    if error.get("message"):
        extra["error_message"] = str(error["message"])
    return _task_event(
        event_type, level, message, worker_id=worker_id, row=row, task_path=task_path, extra=extra
    )


def _error_entry(error_json: str | None) -> dict[str, Any]:
    if not error_json:
        return {}
    try:
        entry = json.loads(error_json)
    except ValueError:
        return {}
    return entry if isinstance(entry, dict) else {}


def _task_event(
    event_type: EventType,
    level: str,
    message: str,
    *,
    worker_id: str,
    row: ClaimedRow,
    task_path: str,
    extra: Mapping[str, str] | None = None,
) -> Event:
    metadata = dict(extra or {})
    if task_path:
        metadata["task_path"] = task_path
    if row.attempt > 0:
        metadata["attempt"] = str(row.attempt)
    if row.max_attempts > 0:
        metadata["max_attempts"] = str(row.max_attempts)
    metadata["role"] = process_role()
    return Event(
        type=event_type,
        level=level,
        message=message,
        queue=row.queue_name,
        task_id=row.result_id,
        worker_id=worker_id,
        metadata=MappingProxyType(metadata),
    )


def task_path_of(row: ClaimedRow) -> str:
    """The ``task_path`` of *row*'s spec ("" when the spec is not readable)."""
    try:
        spec = json.loads(row.spec_text)
    except ValueError:
        return ""
    path = spec.get("task_path") if isinstance(spec, dict) else None
    return path if isinstance(path, str) else ""


@dataclass(frozen=True, slots=True)
class EventFilter:
    """The ``queue``, ``worker_id`` and ``task_id`` query parameters of ``/events``."""

    queue: str = ""
    worker_id: str = ""
    task_id: int | None = None

    @classmethod
    def parse(cls, query: str) -> EventFilter:
        """The filter of a query string; ``ValueError("invalid task_id")`` on a bad id."""
        params = parse_qs(query, keep_blank_values=True)

        def first(name: str) -> str:
            return params.get(name, [""])[0].strip()

        task_id: int | None = None
        raw = first("task_id")
        if raw:
            try:
                task_id = int(raw)
            except ValueError:
                raise ValueError("invalid task_id") from None
        return cls(queue=first("queue"), worker_id=first("worker_id"), task_id=task_id)

    def matches(self, event: Event) -> bool:
        """Whether *event* passes every given condition."""
        if self.queue and event.queue != self.queue:
            return False
        if self.worker_id and event.worker_id != self.worker_id:
            return False
        return self.task_id is None or event.task_id == self.task_id


class Subscription:
    """One listener's view of a broker: the buffered events, then live ones."""

    def __init__(self, broker: EventBroker, backlog: list[Event]) -> None:
        self.backlog = backlog
        """The events published before subscribing (oldest first)."""
        self._broker = broker
        self._queue: queue.Queue[Event] = queue.Queue(maxsize=SUBSCRIBER_QUEUE)

    def offer(self, event: Event) -> None:
        """Queue *event* unless the subscriber is too far behind (then it misses it)."""
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(event)

    def next(self, timeout: float) -> Event | None:
        """The next live event, or None after *timeout* seconds without one."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop receiving events."""
        self._broker.unsubscribe(self)


class EventBroker:
    """Fans events out to subscribers; thread-safe, and never blocks a publisher."""

    def __init__(self, buffer_size: int = BUFFER_SIZE) -> None:
        self._lock = threading.Lock()
        self._buffer: collections.deque[Event] = collections.deque(maxlen=buffer_size)
        self._subscribers: list[Subscription] = []

    def publish(self, event: Event) -> None:
        """Record *event* and hand it to every subscriber."""
        with self._lock:
            self._buffer.append(event)
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            subscription.offer(event)

    def subscribe(self) -> Subscription:
        """A new subscription, starting with the buffered events."""
        with self._lock:
            subscription = Subscription(self, list(self._buffer))
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget *subscription* (idempotent)."""
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        with self._lock:
            return len(self._subscribers)
