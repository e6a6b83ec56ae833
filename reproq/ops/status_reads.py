"""Reads of the queue's state now: per-queue counts, workers, rate limits, schedules,
throughput, the most failing tasks and the beat leader.

Every function takes an open connection and only reads (see :mod:`reproq.ops.observe`
for what keeps them cheap on a large table).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from reproq.db import Conn, translate_errors
from reproq.errors import UsageError
from reproq.models import TaskStatus
from reproq.ops._reads import MAX_LIST_LIMIT, require_positive, str_tuple
from reproq.ops.read_models import (
    BeatStatus,
    ConcurrencyUse,
    FailingTask,
    QueueInfo,
    RateLimit,
    ScheduleInfo,
    StatusSummary,
    ThroughputBucket,
    WorkerInfo,
)
from reproq.queries import q
from reproq.schedule.cron import split_cron_tz

__all__ = [
    "DEFAULT_COUNT_CAP",
    "DEFAULT_STALE_AFTER",
    "DEFAULT_WINDOW",
    "beat_status",
    "list_limits",
    "list_queues",
    "list_schedules",
    "list_workers",
    "status_summary",
    "throughput",
    "top_failing",
]

DEFAULT_COUNT_CAP = 10_000
"""Finished rows counted per (queue, status) before reporting "more than this"."""

DEFAULT_STALE_AFTER = dt.timedelta(minutes=3)
"""A worker not seen for this long is reported stale (three default heartbeats)."""

DEFAULT_WINDOW = dt.timedelta(hours=1)
"""The window of "done recently" figures."""


def _require_window(name: str, value: dt.timedelta) -> None:
    if value <= dt.timedelta(0):
        raise UsageError(f"{name} must be a positive duration, got {value}")


def _age(now: dt.datetime, then: dt.datetime | None) -> float | None:
    if then is None:
        return None
    return max(0.0, (now - then).total_seconds())


def _db_now(conn: Conn) -> dt.datetime:
    row = conn.execute(q("observe_now")).fetchone()
    assert row is not None
    now: dt.datetime = row["now"]
    return now


# --------------------------------------------------------------------------- limits


def list_limits(conn: Conn) -> list[RateLimit]:
    """Every rate limit, ordered by key (``global`` is always there after migrate)."""
    with translate_errors():
        return [RateLimit.from_row(r) for r in conn.execute(q("observe_limits"))]


# --------------------------------------------------------------------------- queues


def list_queues(
    conn: Conn,
    *,
    window: dt.timedelta = DEFAULT_WINDOW,
    count_cap: int | None = DEFAULT_COUNT_CAP,
) -> list[QueueInfo]:
    """Every known queue with its counts, limits and pause state, ordered by name.

    A queue is known when it has rows, a pause control, a ``queue:`` rate limit or a
    worker serving it. Finished counts are capped at ``count_cap`` (see :mod:`reproq.ops.observe`).
    """
    _require_window("window", window)
    if count_cap is not None:
        require_positive("count_cap", count_cap)
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
            queues=str_tuple(r["queues"]),
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
        require_positive("count_cap", count_cap)
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
    require_positive("buckets", buckets, most=10_000)
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
    require_positive("limit", limit, most=MAX_LIST_LIMIT)
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
