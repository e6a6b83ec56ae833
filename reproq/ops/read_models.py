"""The read models of the queue: frozen values for what ``reproq status``, the TUI and
metrics show.

They carry no connection and run no SQL: :mod:`reproq.ops.observe` builds them from rows,
the TUI's demo source builds them from memory, and the CLI renders them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from reproq.models import TaskStatus

__all__ = [
    "AttemptError",
    "BeatStatus",
    "ConcurrencyUse",
    "FailingTask",
    "QueueInfo",
    "RateLimit",
    "ScheduleInfo",
    "StatusSummary",
    "TaskDetail",
    "TaskOrder",
    "TaskRef",
    "TaskRow",
    "ThroughputBucket",
    "TriageRow",
    "WorkerInfo",
    "WorkflowInfo",
    "format_count",
]

_FINISHED = (TaskStatus.SUCCESSFUL, TaskStatus.FAILED, TaskStatus.CANCELLED)


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimit:
    """One token bucket of ``rate_limits``; rate 0 means no limit."""

    key: str
    tokens_per_second: float
    burst_size: int
    current_tokens: float
    last_refilled_at: dt.datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RateLimit:
        """The value of one ``rate_limits`` row."""
        return cls(
            key=row["key"],
            tokens_per_second=float(row["tokens_per_second"]),
            burst_size=int(row["burst_size"]),
            current_tokens=float(row["current_tokens"]),
            last_refilled_at=row["last_refilled_at"],
        )

    @property
    def scope(self) -> str:
        """``global``, ``task`` or ``queue``."""
        return self.key.split(":", 1)[0]

    @property
    def target(self) -> str | None:
        """The task path or queue name the limit applies to (None for ``global``)."""
        parts = self.key.split(":", 1)
        return parts[1] if len(parts) == 2 else None

    @property
    def unlimited(self) -> bool:
        """True when the rate is 0 (the bucket never throttles)."""
        return self.tokens_per_second <= 0


@dataclass(frozen=True, kw_only=True, slots=True)
class ConcurrencyUse:
    """RUNNING rows sharing one ``concurrency_key`` in a queue, against its limit."""

    key: str
    running: int
    limit: int


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueInfo:
    """Everything about one queue, as the Queues screen and ``reproq status`` show it.

    ``successful``/``failed``/``cancelled`` are capped counts: a value above
    ``count_cap`` of the call means "more than the cap".
    """

    queue: str
    ready: int
    scheduled: int
    waiting: int
    running: int
    successful: int
    failed: int
    cancelled: int
    succeeded_in_window: int
    failed_in_window: int
    cancelled_in_window: int
    oldest_ready_at: dt.datetime | None
    oldest_ready_age_seconds: float | None
    paused: bool
    paused_at: dt.datetime | None
    pause_reason: str | None
    rate_limit: RateLimit | None
    concurrency: tuple[ConcurrencyUse, ...]

    def count(self, status: TaskStatus | str) -> int:
        """The row count for one status (READY counts due and scheduled rows)."""
        match TaskStatus(status):
            case TaskStatus.READY:
                return self.ready + self.scheduled
            case TaskStatus.WAITING:
                return self.waiting
            case TaskStatus.RUNNING:
                return self.running
            case TaskStatus.SUCCESSFUL:
                return self.successful
            case TaskStatus.FAILED:
                return self.failed
            case TaskStatus.CANCELLED:
                return self.cancelled


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerInfo:
    """One row of ``reproq_workers`` with its liveness and the tasks it holds now."""

    worker_id: str
    hostname: str | None
    concurrency: int | None
    queues: tuple[str, ...]
    started_at: dt.datetime
    last_seen_at: dt.datetime
    last_seen_seconds: float
    version: str | None
    stale: bool
    running: int


@dataclass(frozen=True, kw_only=True, slots=True)
class StatusSummary:
    """The whole picture at one instant: per-queue counts, workers and rate limits."""

    now: dt.datetime
    queues: tuple[QueueInfo, ...]
    totals: Mapping[str, int]
    count_cap: int | None
    window_seconds: float
    workers: tuple[WorkerInfo, ...]
    limits: tuple[RateLimit, ...]

    @property
    def workers_alive(self) -> int:
        """Workers seen within the stale threshold."""
        return sum(1 for w in self.workers if not w.stale)

    @property
    def workers_stale(self) -> int:
        """Workers not seen within the stale threshold."""
        return sum(1 for w in self.workers if w.stale)

    @property
    def paused_queues(self) -> tuple[QueueInfo, ...]:
        """The paused queues, with their reasons."""
        return tuple(q_ for q_ in self.queues if q_.paused)

    def total_text(self, status: TaskStatus | str) -> str:
        """The total for one status as text: ``"50000+"`` when a queue hit the cap."""
        wanted = TaskStatus(status)
        if self.count_cap is None or wanted not in _FINISHED:
            return str(self.totals[str(wanted)])
        values = [q_.count(wanted) for q_ in self.queues]
        total = sum(min(v, self.count_cap) for v in values)
        return f"{total}+" if any(v > self.count_cap for v in values) else str(total)

    @property
    def oldest_ready_age_seconds(self) -> float | None:
        """The largest oldest-READY age over all queues (None when nothing is due)."""
        ages = [q_.oldest_ready_age_seconds for q_ in self.queues]
        present = [a for a in ages if a is not None]
        return max(present) if present else None


class TaskOrder(StrEnum):
    """Listing order; ``result_id`` follows enqueue order."""

    NEWEST = "newest"
    OLDEST = "oldest"


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskRow:
    """One line of a task listing (no spec, no payloads: listings stay light)."""

    result_id: int
    task_path: str
    queue_name: str
    status: TaskStatus
    priority: int
    attempts: int
    max_attempts: int
    enqueued_at: dt.datetime
    run_after: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    leased_by: str | None
    leased_until: dt.datetime | None
    last_error: str | None
    cancel_requested: bool
    parent_id: int | None
    workflow_id: uuid.UUID | None
    worker_ids: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskRef:
    """A pointer to a related task run (parent, child, workflow member)."""

    result_id: int
    status: TaskStatus
    task_path: str
    queue_name: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AttemptError:
    """One entry of ``errors_json``: why one attempt failed."""

    kind: str
    message: str | None
    exception_class: str | None
    traceback: str | None
    attempt: int | None
    at: str | None
    worker_id: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkflowInfo:
    """A ``workflow_runs`` row (group or chord) with its members."""

    workflow_id: uuid.UUID
    status: str
    expected_count: int
    success_count: int
    failure_count: int
    callback_result_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    members: tuple[TaskRef, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskDetail:
    """Every column of one task run, decoded, plus its lineage."""

    result_id: int
    backend_alias: str
    queue_name: str
    priority: int
    run_after: dt.datetime | None
    spec: Mapping[str, Any]
    spec_hash: str
    task_path: str
    status: TaskStatus
    enqueued_at: dt.datetime
    started_at: dt.datetime | None
    last_attempted_at: dt.datetime | None
    finished_at: dt.datetime | None
    attempts: int
    max_attempts: int
    timeout_seconds: int
    lock_key: str | None
    concurrency_key: str | None
    concurrency_limit: int
    worker_ids: tuple[str, ...]
    return_value: Any
    errors: tuple[AttemptError, ...]
    metadata: Mapping[str, Any]
    last_error: str | None
    failed_at: dt.datetime | None
    leased_until: dt.datetime | None
    leased_by: str | None
    logs_uri: str | None
    artifacts_uri: str | None
    expires_at: dt.datetime | None
    parent_id: int | None
    workflow_id: uuid.UUID | None
    wait_count: int
    created_at: dt.datetime
    updated_at: dt.datetime
    cancel_requested: bool
    parent: TaskRef | None = None
    children: tuple[TaskRef, ...] = ()
    workflow: WorkflowInfo | None = None
    chain: tuple[TaskRef, ...] = ()
    replayed_from: int | None = None
    replayed_from_ref: TaskRef | None = None

    @property
    def args(self) -> list[Any]:
        """The positional arguments from the spec."""
        value = self.spec.get("args", [])
        return list(value) if isinstance(value, list) else []

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments from the spec."""
        value = self.spec.get("kwargs", {})
        return dict(value) if isinstance(value, dict) else {}


@dataclass(frozen=True, kw_only=True, slots=True)
class TriageRow:
    """One FAILED row in the dead-letter listing."""

    result_id: int
    task_path: str
    queue_name: str
    attempts: int
    max_attempts: int
    failed_at: dt.datetime | None
    finished_at: dt.datetime | None
    last_error: str | None
    error_kind: str | None
    exception_class: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleInfo:
    """One ``periodic_tasks`` row as the Schedules screen shows it."""

    name: str
    cron_expr: str
    cron: str
    timezone: str
    task_path: str
    payload: Any
    queue_name: str
    priority: int
    max_attempts: int
    concurrency_key: str | None
    concurrency_limit: int
    last_run_at: dt.datetime | None
    next_run_at: dt.datetime
    enabled: bool
    misfire_policy: str
    misfire_limit: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ThroughputBucket:
    """Rows that finished in ``[start, start + width)``."""

    start: dt.datetime
    succeeded: int
    failed: int


@dataclass(frozen=True, kw_only=True, slots=True)
class BeatStatus:
    """Which session leads beat, and the next schedule due to fire."""

    leader_pid: int | None
    leader_application: str | None
    leader_since: dt.datetime | None
    next_schedule: str | None
    next_fire_at: dt.datetime | None


@dataclass(frozen=True, kw_only=True, slots=True)
class FailingTask:
    """A task path with terminal failures in the window."""

    task_path: str
    failures: int
    last_failed_at: dt.datetime
    last_error: str | None


def format_count(value: int, cap: int | None) -> str:
    """A count for display: ``"10000+"`` when it went past ``cap``."""
    if cap is not None and value > cap:
        return f"{cap}+"
    return str(value)
