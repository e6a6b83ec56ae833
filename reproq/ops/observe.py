"""Read-only views of the queue: what ``reproq status``, the TUI and metrics show.

Every function takes an open connection and only reads. They are built to stay cheap
on a table with millions of finished rows:

- READY, RUNNING and WAITING rows are counted exactly, through their partial indexes;
  the cost grows with the number of *active* rows only.
- SUCCESSFUL, FAILED and CANCELLED rows are counted per queue up to ``count_cap`` rows
  (a value above the cap means "more than the cap"; :func:`format_count` renders it as
  ``10000+``). Pass ``count_cap=None`` for exact counts, which read every finished row.
- Windowed figures (done in the last hour, throughput, top failing) walk the
  ``finished_at`` / ``failed_at`` indexes over the window only.

Ages are measured against the database's clock, so a skewed client clock cannot make
them negative.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from reproq.db import Conn, translate_errors
from reproq.errors import TaskNotFound, UsageError
from reproq.models import TaskStatus
from reproq.queries import q
from reproq.schedule.cron import split_cron_tz

__all__ = [
    "DEFAULT_COUNT_CAP",
    "DEFAULT_STALE_AFTER",
    "DEFAULT_WINDOW",
    "AttemptError",
    "BeatStatus",
    "ConcurrencyUse",
    "FailingTask",
    "QueueInfo",
    "RateLimit",
    "ScheduleInfo",
    "StatusSummary",
    "TaskDetail",
    "TaskFilter",
    "TaskOrder",
    "TaskRef",
    "TaskRow",
    "ThroughputBucket",
    "TriageRow",
    "WorkerInfo",
    "WorkflowInfo",
    "beat_status",
    "format_count",
    "get_task",
    "glob_to_like",
    "list_limits",
    "list_queues",
    "list_schedules",
    "list_tasks",
    "list_workers",
    "parse_filter",
    "status_summary",
    "throughput",
    "top_failing",
    "triage_list",
]

DEFAULT_COUNT_CAP = 10_000
"""Finished rows counted per (queue, status) before reporting "more than this"."""

DEFAULT_STALE_AFTER = dt.timedelta(minutes=3)
"""A worker not seen for this long is reported stale (three default heartbeats)."""

DEFAULT_WINDOW = dt.timedelta(hours=1)
"""The window of "done recently" figures."""

MAX_LIST_LIMIT = 10_000
"""The most rows one listing call returns."""

_FINISHED = (TaskStatus.SUCCESSFUL, TaskStatus.FAILED, TaskStatus.CANCELLED)
_LINEAGE_LIMIT = 200


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimit:
    """One token bucket of ``rate_limits``; rate 0 means no limit."""

    key: str
    tokens_per_second: float
    burst_size: int
    current_tokens: float
    last_refilled_at: dt.datetime

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
class TaskFilter:
    """Which task runs a listing shows; empty fields do not filter.

    ``task_path`` is a glob (``billing.*``, ``*.send_?``); ``worker_id`` matches the
    current lease holder or any worker that ever claimed the row; ages are measured from
    ``enqueued_at`` (``min_age`` 1h = enqueued more than an hour ago).
    """

    statuses: tuple[TaskStatus, ...] = ()
    queues: tuple[str, ...] = ()
    task_path: str | None = None
    worker_id: str | None = None
    result_ids: tuple[int, ...] = ()
    min_age: dt.timedelta | None = None
    max_age: dt.timedelta | None = None

    @property
    def is_empty(self) -> bool:
        """True when the filter lets every row through."""
        return self == TaskFilter()


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


# --------------------------------------------------------------------------- helpers


def format_count(value: int, cap: int | None) -> str:
    """A count for display: ``"10000+"`` when it went past ``cap``."""
    if cap is not None and value > cap:
        return f"{cap}+"
    return str(value)


def glob_to_like(pattern: str) -> str:
    """A shell-style glob (``*`` any run, ``?`` one character) as a LIKE pattern."""
    out: list[str] = []
    for ch in pattern:
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


def _require_positive(name: str, value: int, *, most: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
    if most is not None and value > most:
        raise UsageError(f"{name} must be at most {most}, got {value}")


def _require_window(name: str, value: dt.timedelta) -> None:
    if value <= dt.timedelta(0):
        raise UsageError(f"{name} must be a positive duration, got {value}")


def _age(now: dt.datetime, then: dt.datetime | None) -> float | None:
    if then is None:
        return None
    return max(0.0, (now - then).total_seconds())


def _str_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()


def _db_now(conn: Conn) -> dt.datetime:
    row = conn.execute(q("observe_now")).fetchone()
    assert row is not None
    now: dt.datetime = row["now"]
    return now


# --------------------------------------------------------------------------- limits


def _rate_limit(row: Mapping[str, Any]) -> RateLimit:
    return RateLimit(
        key=row["key"],
        tokens_per_second=float(row["tokens_per_second"]),
        burst_size=int(row["burst_size"]),
        current_tokens=float(row["current_tokens"]),
        last_refilled_at=row["last_refilled_at"],
    )


def list_limits(conn: Conn) -> list[RateLimit]:
    """Every rate limit, ordered by key (``global`` is always there after migrate)."""
    with translate_errors():
        return [_rate_limit(r) for r in conn.execute(q("observe_limits"))]


# --------------------------------------------------------------------------- queues


def list_queues(
    conn: Conn,
    *,
    window: dt.timedelta = DEFAULT_WINDOW,
    count_cap: int | None = DEFAULT_COUNT_CAP,
) -> list[QueueInfo]:
    """Every known queue with its counts, limits and pause state, ordered by name.

    A queue is known when it has rows, a pause control, a ``queue:`` rate limit or a
    worker serving it. Finished counts are capped at ``count_cap`` (see the module doc).
    """
    _require_window("window", window)
    if count_cap is not None:
        _require_positive("count_cap", count_cap)
    with translate_errors():
        now = _db_now(conn)
        return _queues(conn, now=now, window=window, count_cap=count_cap)


def _queues(
    conn: Conn, *, now: dt.datetime, window: dt.timedelta, count_cap: int | None
) -> list[QueueInfo]:
    active: dict[str, dict[str, Any]] = {}

    def slot(name: str) -> dict[str, Any]:
        return active.setdefault(
            name,
            {"ready": 0, "scheduled": 0, "waiting": 0, "running": 0, "oldest_ready_at": None},
        )

    for row in conn.execute(q("observe_active_counts")):
        entry = slot(row["queue_name"])
        for key in ("ready", "scheduled", "waiting", "running"):
            entry[key] += int(row[key])
        if row["oldest_ready_at"] is not None:
            entry["oldest_ready_at"] = row["oldest_ready_at"]

    controls = {r["queue_name"]: r for r in conn.execute(q("observe_queue_controls"))}
    limits = {lim.target: lim for lim in list_limits(conn) if lim.scope == "queue"}
    worker_queues = {r["queue_name"] for r in conn.execute(q("observe_worker_queues"))}
    finished_queues = {r["queue_name"] for r in conn.execute(q("observe_finished_queues"))}
    names = sorted(
        set(active) | set(controls) | {n for n in limits if n} | worker_queues | finished_queues
    )

    finished: dict[tuple[str, str], int] = {}
    if names:
        # LIMIT NULL counts everything: the exact mode.
        cap_param = None if count_cap is None else count_cap + 1
        for row in conn.execute(
            q("observe_finished_counts"), {"queues": names, "cap": cap_param}, prepare=False
        ):
            finished[(row["queue_name"], row["status"])] = int(row["n"])

    recent = {
        r["queue_name"]: r for r in conn.execute(q("observe_done_in_window"), {"window": window})
    }
    concurrency: dict[str, list[ConcurrencyUse]] = {}
    for row in conn.execute(q("observe_concurrency_in_use")):
        concurrency.setdefault(row["queue_name"], []).append(
            ConcurrencyUse(
                key=row["concurrency_key"],
                running=int(row["running"]),
                limit=int(row["max_limit"] or 0),
            )
        )

    result: list[QueueInfo] = []
    for name in names:
        entry = slot(name)
        control = controls.get(name)
        done = recent.get(name)
        paused = bool(control and control["paused"])
        result.append(
            QueueInfo(
                queue=name,
                ready=entry["ready"],
                scheduled=entry["scheduled"],
                waiting=entry["waiting"],
                running=entry["running"],
                successful=finished.get((name, TaskStatus.SUCCESSFUL), 0),
                failed=finished.get((name, TaskStatus.FAILED), 0),
                cancelled=finished.get((name, TaskStatus.CANCELLED), 0),
                succeeded_in_window=int(done["succeeded"]) if done else 0,
                failed_in_window=int(done["failed"]) if done else 0,
                cancelled_in_window=int(done["cancelled"]) if done else 0,
                oldest_ready_at=entry["oldest_ready_at"],
                oldest_ready_age_seconds=_age(now, entry["oldest_ready_at"]),
                paused=paused,
                paused_at=control["paused_at"] if paused and control else None,
                pause_reason=control["reason"] if paused and control else None,
                rate_limit=limits.get(name),
                concurrency=tuple(concurrency.get(name, ())),
            )
        )
    return result


# --------------------------------------------------------------------------- workers


def list_workers(conn: Conn, stale_after: dt.timedelta = DEFAULT_STALE_AFTER) -> list[WorkerInfo]:
    """Registered workers with liveness (stale = not seen for ``stale_after``) and load."""
    _require_window("stale_after", stale_after)
    with translate_errors():
        rows = list(conn.execute(q("observe_workers"), {"stale_after": stale_after}))
    return [
        WorkerInfo(
            worker_id=r["worker_id"],
            hostname=r["hostname"],
            concurrency=r["concurrency"],
            queues=_str_tuple(r["queues"]),
            started_at=r["started_at"],
            last_seen_at=r["last_seen_at"],
            last_seen_seconds=_age(r["now"], r["last_seen_at"]) or 0.0,
            version=r["version"],
            stale=bool(r["stale"]),
            running=int(r["running"]),
        )
        for r in rows
    ]


# --------------------------------------------------------------------------- summary


def status_summary(
    conn: Conn,
    *,
    stale_after: dt.timedelta = DEFAULT_STALE_AFTER,
    window: dt.timedelta = DEFAULT_WINDOW,
    count_cap: int | None = DEFAULT_COUNT_CAP,
) -> StatusSummary:
    """Counts per queue and status, oldest READY ages, pause state, workers, rate limits.

    ``totals`` sums each status over all queues; finished totals are sums of capped
    per-queue counts, so they too read as "at least" when any queue hit the cap.
    """
    _require_window("window", window)
    _require_window("stale_after", stale_after)
    if count_cap is not None:
        _require_positive("count_cap", count_cap)
    with translate_errors():
        now = _db_now(conn)
        queues = _queues(conn, now=now, window=window, count_cap=count_cap)
        limits = list_limits(conn)
    workers = list_workers(conn, stale_after)
    totals = {str(s): sum(qi.count(s) for qi in queues) for s in TaskStatus}
    return StatusSummary(
        now=now,
        queues=tuple(queues),
        totals=totals,
        count_cap=count_cap,
        window_seconds=window.total_seconds(),
        workers=tuple(workers),
        limits=tuple(limits),
    )


# --------------------------------------------------------------------------- tasks

_FILTER_FIELDS = ("status", "queue", "task", "worker", "id", "age")
_AGE = re.compile(r"^(>=|<=|>|<)?(.+)$")


def parse_filter(text: str) -> TaskFilter:
    """Parse the small filter language of the Tasks screen into a :class:`TaskFilter`.

    Space-separated ``field:value`` terms; comma-separated values mean "any of"::

        status:failed,running queue:emails task:billing.* worker:w1 id:12,13 age:>1h

    ``age:>1h`` means enqueued more than an hour ago, ``age:<10m`` less than ten minutes
    ago. A word without a field matches task paths containing it. Raises
    :class:`UsageError` naming the bad term.
    """
    statuses: list[TaskStatus] = []
    queues: list[str] = []
    ids: list[int] = []
    task_path: str | None = None
    worker: str | None = None
    min_age: dt.timedelta | None = None
    max_age: dt.timedelta | None = None
    for term in text.split():
        name, sep, value = term.partition(":")
        if not sep:
            if task_path is not None:
                raise UsageError(f"filter {term!r}: a task path pattern is already given")
            task_path = f"*{term}*"
            continue
        name = name.lower()
        if name not in _FILTER_FIELDS:
            raise UsageError(
                f"unknown filter field {name!r} in {term!r} (known: {', '.join(_FILTER_FIELDS)})"
            )
        if not value:
            raise UsageError(f"filter {term!r} has no value")
        if name == "status":
            for item in value.split(","):
                try:
                    statuses.append(TaskStatus(item.upper()))
                except ValueError:
                    known = ", ".join(s.lower() for s in TaskStatus)
                    raise UsageError(
                        f"unknown status {item!r} in {term!r} (known: {known})"
                    ) from None
        elif name == "queue":
            queues.extend(v for v in value.split(",") if v)
        elif name == "task":
            if task_path is not None:
                raise UsageError(f"filter {term!r}: a task path pattern is already given")
            task_path = value
        elif name == "worker":
            if worker is not None:
                raise UsageError(f"filter {term!r}: a worker is already given")
            worker = value
        elif name == "id":
            for item in value.split(","):
                try:
                    number = int(item.lstrip("#"))
                except ValueError:
                    raise UsageError(f"filter {term!r}: {item!r} is not a task id") from None
                if number < 1:
                    raise UsageError(f"filter {term!r}: {item!r} is not a task id")
                ids.append(number)
        else:
            op, amount = _parse_age(term, value)
            if op in (">", ">="):
                min_age = amount
            else:
                max_age = amount
    return TaskFilter(
        statuses=tuple(dict.fromkeys(statuses)),
        queues=tuple(dict.fromkeys(queues)),
        task_path=task_path,
        worker_id=worker,
        result_ids=tuple(dict.fromkeys(ids)),
        min_age=min_age,
        max_age=max_age,
    )


def _parse_age(term: str, value: str) -> tuple[str, dt.timedelta]:
    from reproq.durations import DurationError, parse_duration

    match = _AGE.match(value)
    assert match is not None  # the pattern accepts any non-empty text
    op = match.group(1) or ">"
    try:
        seconds = parse_duration(match.group(2))
    except DurationError as exc:
        raise UsageError(f"filter {term!r}: {exc} (write age:>1h or age:<10m)") from None
    return op, dt.timedelta(seconds=seconds)


def _filter_params(flt: TaskFilter) -> dict[str, Any]:
    pattern = flt.task_path or None
    wildcard = pattern is not None and any(ch in "*?" for ch in pattern)
    return {
        "statuses": [str(s) for s in flt.statuses] or None,
        "queues": list(flt.queues) or None,
        # A pattern without wildcards is an equality, which the task_path index serves.
        "task_like": glob_to_like(pattern) if pattern is not None and wildcard else None,
        "task_exact": pattern if not wildcard else None,
        "worker": flt.worker_id,
        "ids": list(flt.result_ids) or None,
        "min_age": flt.min_age,
        "max_age": flt.max_age,
    }


def _task_row(r: Mapping[str, Any]) -> TaskRow:
    return TaskRow(
        result_id=int(r["result_id"]),
        task_path=r["task_path"] or "",
        queue_name=r["queue_name"],
        status=TaskStatus(r["status"]),
        priority=int(r["priority"]),
        attempts=int(r["attempts"]),
        max_attempts=int(r["max_attempts"]),
        enqueued_at=r["enqueued_at"],
        run_after=r["run_after"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        leased_by=r["leased_by"],
        leased_until=r["leased_until"],
        last_error=r["last_error"],
        cancel_requested=bool(r["cancel_requested"]),
        parent_id=r["parent_id"],
        workflow_id=r["workflow_id"],
        worker_ids=_str_tuple(r["worker_ids"]),
    )


def list_tasks(
    conn: Conn,
    filter: TaskFilter | None = None,
    *,
    limit: int = 100,
    offset: int = 0,
    cursor: int | None = None,
    order: TaskOrder | str = TaskOrder.NEWEST,
) -> list[TaskRow]:
    """Task runs matching ``filter``, newest (or oldest) first.

    Page with ``cursor``: pass the last ``result_id`` of the previous page to continue
    after it (keyset paging, cheap at any depth); ``offset`` also works but reads and
    discards the skipped rows.
    """
    _require_positive("limit", limit, most=MAX_LIST_LIMIT)
    if offset < 0:
        raise UsageError(f"offset must not be negative, got {offset}")
    try:
        order = TaskOrder(order)
    except ValueError:
        raise UsageError(f"unknown order {order!r} (known: newest, oldest)") from None
    params = _filter_params(filter or TaskFilter())
    params.update(limit=limit, offset=offset, cursor=cursor)
    if order is TaskOrder.NEWEST:
        query = q("observe_list_tasks_newest")
    else:
        query = q("observe_list_tasks_oldest")
    with translate_errors():
        # Unprepared: each call is planned with its own values, so the disabled filters
        # fold away and the right index is chosen (a cached generic plan could not).
        rows = list(conn.execute(query, params, prepare=False))
    return [_task_row(r) for r in rows]


def _ref(r: Mapping[str, Any]) -> TaskRef:
    return TaskRef(
        result_id=int(r["result_id"]),
        status=TaskStatus(r["status"]),
        task_path=r["task_path"] or "",
        queue_name=r["queue_name"],
    )


def _attempt_error(entry: Any) -> AttemptError:
    if not isinstance(entry, dict):
        return AttemptError(
            kind="unknown",
            message=str(entry),
            exception_class=None,
            traceback=None,
            attempt=None,
            at=None,
            worker_id=None,
        )
    attempt = entry.get("attempt")
    return AttemptError(
        kind=str(entry.get("kind") or "unknown"),
        message=_opt_str(entry.get("message")),
        exception_class=_opt_str(entry.get("exception_class")),
        traceback=_opt_str(entry.get("traceback")),
        attempt=attempt if isinstance(attempt, int) else None,
        at=_opt_str(entry.get("at")),
        worker_id=_opt_str(entry.get("worker_id")),
    )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _replayed_from(metadata: Any) -> int | None:
    if not isinstance(metadata, dict):
        return None
    value = metadata.get("replayed_from")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def get_task(conn: Conn, result_id: int) -> TaskDetail:
    """One task run in full: spec, every attempt's error, return value and lineage.

    Lineage: the chain parent, the children (rows whose ``parent_id`` is this one), the
    workflow row with its members (at most 200 each) and the row it was replayed from.
    """
    with translate_errors():
        r = conn.execute(q("observe_get_task"), {"result_id": result_id}).fetchone()
        if r is None:
            raise TaskNotFound(f"no task run with result_id {result_id}")
        replayed_from = _replayed_from(r["metadata_json"])
        wanted = [i for i in (r["parent_id"], replayed_from) if i is not None]
        refs = (
            {
                int(x["result_id"]): _ref(x)
                for x in conn.execute(q("observe_task_refs"), {"ids": wanted})
            }
            if wanted
            else {}
        )
        children = tuple(
            _ref(x)
            for x in conn.execute(
                q("observe_children"), {"result_id": result_id, "limit": _LINEAGE_LIMIT}
            )
        )
        workflow: WorkflowInfo | None = None
        chain: tuple[TaskRef, ...] = ()
        if r["workflow_id"] is not None:
            members = tuple(
                _ref(x)
                for x in conn.execute(
                    q("observe_workflow_members"),
                    {"workflow_id": r["workflow_id"], "limit": _LINEAGE_LIMIT},
                )
            )
            w = conn.execute(q("observe_workflow"), {"workflow_id": r["workflow_id"]}).fetchone()
            if w is None:
                # Chains share a workflow_id but have no workflow_runs row.
                chain = members
            else:
                workflow = WorkflowInfo(
                    workflow_id=w["workflow_id"],
                    status=w["status"],
                    expected_count=int(w["expected_count"]),
                    success_count=int(w["success_count"]),
                    failure_count=int(w["failure_count"]),
                    callback_result_id=w["callback_result_id"],
                    created_at=w["created_at"],
                    updated_at=w["updated_at"],
                    members=members,
                )
    spec = r["spec_json"] if isinstance(r["spec_json"], dict) else {}
    errors = r["errors_json"] if isinstance(r["errors_json"], list) else []
    metadata = r["metadata_json"] if isinstance(r["metadata_json"], dict) else {}
    return TaskDetail(
        result_id=int(r["result_id"]),
        backend_alias=r["backend_alias"],
        queue_name=r["queue_name"],
        priority=int(r["priority"]),
        run_after=r["run_after"],
        spec=spec,
        spec_hash=str(r["spec_hash"]).strip(),
        task_path=r["task_path"] or str(spec.get("task_path", "")),
        status=TaskStatus(r["status"]),
        enqueued_at=r["enqueued_at"],
        started_at=r["started_at"],
        last_attempted_at=r["last_attempted_at"],
        finished_at=r["finished_at"],
        attempts=int(r["attempts"]),
        max_attempts=int(r["max_attempts"]),
        timeout_seconds=int(r["timeout_seconds"]),
        lock_key=r["lock_key"],
        concurrency_key=r["concurrency_key"],
        concurrency_limit=int(r["concurrency_limit"]),
        worker_ids=_str_tuple(r["worker_ids"]),
        return_value=r["return_json"],
        errors=tuple(_attempt_error(e) for e in errors),
        metadata=metadata,
        last_error=r["last_error"],
        failed_at=r["failed_at"],
        leased_until=r["leased_until"],
        leased_by=r["leased_by"],
        logs_uri=r["logs_uri"],
        artifacts_uri=r["artifacts_uri"],
        expires_at=r["expires_at"],
        parent_id=r["parent_id"],
        workflow_id=r["workflow_id"],
        wait_count=int(r["wait_count"]),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        cancel_requested=bool(r["cancel_requested"]),
        parent=refs.get(r["parent_id"]) if r["parent_id"] is not None else None,
        children=children,
        workflow=workflow,
        chain=chain,
        replayed_from=replayed_from,
        replayed_from_ref=refs.get(replayed_from) if replayed_from is not None else None,
    )


def triage_list(conn: Conn, *, queue: str | None = None, limit: int = 50) -> list[TriageRow]:
    """FAILED rows (the dead-letter queue), newest failure first, with their last error."""
    _require_positive("limit", limit, most=MAX_LIST_LIMIT)
    with translate_errors():
        rows = list(
            conn.execute(q("observe_triage"), {"queue": queue, "limit": limit}, prepare=False)
        )
    return [
        TriageRow(
            result_id=int(r["result_id"]),
            task_path=r["task_path"] or "",
            queue_name=r["queue_name"],
            attempts=int(r["attempts"]),
            max_attempts=int(r["max_attempts"]),
            failed_at=r["failed_at"],
            finished_at=r["finished_at"],
            last_error=r["last_error"],
            error_kind=r["error_kind"],
            exception_class=r["exception_class"],
        )
        for r in rows
    ]


# --------------------------------------------------------------------------- schedules


def list_schedules(conn: Conn) -> list[ScheduleInfo]:
    """Every ``periodic_tasks`` row by name, with its cron split from its time zone."""
    with translate_errors():
        rows = list(conn.execute(q("observe_schedules")))
    result: list[ScheduleInfo] = []
    for r in rows:
        zone, fields = split_cron_tz(r["cron_expr"])
        result.append(
            ScheduleInfo(
                name=r["name"],
                cron_expr=r["cron_expr"],
                cron=fields,
                timezone=zone or "UTC",
                task_path=r["task_path"],
                payload=r["payload_json"],
                queue_name=r["queue_name"],
                priority=int(r["priority"]),
                max_attempts=int(r["max_attempts"]),
                concurrency_key=r["concurrency_key"],
                concurrency_limit=int(r["concurrency_limit"]),
                last_run_at=r["last_run_at"],
                next_run_at=r["next_run_at"],
                enabled=bool(r["enabled"]),
                misfire_policy=r["misfire_policy"],
                misfire_limit=int(r["misfire_limit"]),
            )
        )
    return result


# --------------------------------------------------------------------------- rates


def throughput(
    conn: Conn, window: dt.timedelta = DEFAULT_WINDOW, buckets: int = 30
) -> list[ThroughputBucket]:
    """Rows finished per bucket over the last ``window``, oldest bucket first (sparklines).

    Every bucket is present, empty ones with zeros; the last one ends now.
    """
    _require_window("window", window)
    _require_positive("buckets", buckets, most=10_000)
    with translate_errors():
        rows = list(conn.execute(q("observe_throughput"), {"window": window, "buckets": buckets}))
    return [
        ThroughputBucket(
            start=r["bucket_start"], succeeded=int(r["succeeded"]), failed=int(r["failed"])
        )
        for r in rows
    ]


def top_failing(
    conn: Conn, window: dt.timedelta = DEFAULT_WINDOW, limit: int = 10
) -> list[FailingTask]:
    """Task paths with the most terminal failures (FAILED by ``failed_at``) in the window."""
    _require_window("window", window)
    _require_positive("limit", limit, most=MAX_LIST_LIMIT)
    with translate_errors():
        rows = list(conn.execute(q("observe_top_failing"), {"window": window, "limit": limit}))
    return [
        FailingTask(
            task_path=r["task_path"] or "",
            failures=int(r["failures"]),
            last_failed_at=r["last_failed_at"],
            last_error=r["last_error"],
        )
        for r in rows
    ]


def beat_status(conn: Conn) -> BeatStatus:
    """The beat leader (the session holding the leadership lock), if any, and the next fire."""
    from reproq.schedule.beat import current_leader

    leader = current_leader(conn)
    with translate_errors():
        nxt = conn.execute(q("observe_next_fire")).fetchone()
    return BeatStatus(
        leader_pid=leader.pid if leader else None,
        leader_application=leader.application_name if leader else None,
        leader_since=leader.backend_start if leader else None,
        next_schedule=nxt["name"] if nxt else None,
        next_fire_at=nxt["next_run_at"] if nxt else None,
    )
