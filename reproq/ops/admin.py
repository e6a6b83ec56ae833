"""Operator writes: every change an operator makes, for the CLI and the TUI alike.

*Retry* puts the same FAILED row back to READY (attempts start over, the error history
stays); *replay* inserts a new READY row from the spec of an existing one. The two are
never swapped.

Every function takes an open connection first, changes only rows in the state it
expects (a row that moved on meanwhile is left alone), and returns a frozen value.
Problems raise :class:`~reproq.errors.TaskNotFound`, :class:`~reproq.errors.NotFound`,
:class:`~reproq.errors.ActionNotAllowed`, :class:`~reproq.errors.AlreadyQueued` or
:class:`~reproq.errors.UsageError`, each naming the task id or key involved. Which
status allows which action, and the values returned, are in :mod:`reproq.ops.admin_rules`
(shared with the TUI's demo source).

Cancelling a READY or WAITING row also cancels every WAITING row that could only run
after it (chain children, and the callback of a chord the row belongs to): a cancelled
parent must not leave descendants WAITING forever. A RUNNING row only gets
``cancel_requested``; its worker stops it within a heartbeat and fails it, and the
worker's failure handling takes care of its descendants.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg

from reproq.db import Conn, translate_errors
from reproq.errors import (
    ActionNotAllowed,
    AlreadyQueued,
    InvalidSpec,
    NotFound,
    TaskNotFound,
    UsageError,
)
from reproq.models import TaskStatus
from reproq.ops.admin_rules import (
    FINISHED_STATUSES,
    SKIP_DUPLICATE,
    SKIP_FINISHED,
    SKIP_NOT_FAILED,
    SKIP_NOT_FOUND,
    BulkResult,
    CancelOutcome,
    CancelResult,
    LimitRemoved,
    QueueState,
    ReplayResult,
    RetryResult,
    ScheduleState,
    cancel_each,
    cancel_outcome,
    retry_each,
    retry_refusal,
)
from reproq.ops.read_models import RateLimit
from reproq.ops.task_filter import glob_to_like
from reproq.producer.enqueue import NewTask, insert_task
from reproq.queries import q
from reproq.spec import canonical_json, parse_spec

__all__ = [
    "FINISHED_STATUSES",
    "SKIP_DUPLICATE",
    "SKIP_FINISHED",
    "SKIP_NOT_FAILED",
    "SKIP_NOT_FOUND",
    "BulkResult",
    "CancelOutcome",
    "CancelResult",
    "LimitRemoved",
    "QueueState",
    "ReplayResult",
    "RetryResult",
    "ScheduleState",
    "bulk_cancel",
    "bulk_retry",
    "cancel",
    "pause_queue",
    "prune_expired",
    "prune_finished",
    "prune_workers",
    "remove_limit",
    "replay",
    "resume_queue",
    "retry",
    "retry_all",
    "run_schedule_now",
    "set_limit",
    "set_schedule_enabled",
]

_SPEC_HASH = re.compile(r"^[0-9a-f]{64}$")
_LIMIT_KEY = re.compile(r"^(global|task:\S+|queue:\S+)$")
_ACTIVE_SPEC_INDEX = "task_runs_active_spec_hash_uniq"
_PRUNE_BATCH = 10_000


# --------------------------------------------------------------------------- replay


def replay(
    conn: Conn, *, result_id: int | None = None, spec_hash: str | None = None
) -> ReplayResult:
    """Insert a new READY row running the same spec as an existing row.

    The new row copies the spec and the source's queue, priority, lock and concurrency
    keys, concurrency limit, max_attempts, timeout and metadata, records
    ``metadata_json.replayed_from``, and runs now (no ``run_after``, no expiry). With
    ``spec_hash`` the newest row of that spec is the source. If an identical spec is
    READY or RUNNING, :class:`AlreadyQueued` names that row.
    """
    if (result_id is None) == (spec_hash is None):
        raise UsageError("replay needs exactly one of a result id or a spec hash")
    with translate_errors():
        if result_id is not None:
            source = conn.execute(
                q("admin_replay_source_by_id"), {"result_id": result_id}
            ).fetchone()
            if source is None:
                raise TaskNotFound(f"no task run with result_id {result_id}")
        else:
            assert spec_hash is not None
            wanted = spec_hash.strip().lower()
            if not _SPEC_HASH.match(wanted):
                raise UsageError(f"spec hash {spec_hash!r} is not 64 hexadecimal characters")
            source = conn.execute(
                q("admin_replay_source_by_hash"), {"spec_hash": wanted}
            ).fetchone()
            if source is None:
                raise TaskNotFound(f"no task run with spec_hash {wanted}")
        source_id = int(source["result_id"])
        spec = parse_spec(source["spec_json"], result_id=source_id)
        metadata = (
            dict(source["metadata_json"] or {}) if isinstance(source["metadata_json"], dict) else {}
        )
        metadata["replayed_from"] = source_id
        # The stored hash is kept rather than recomputed: it is what the other writers of
        # this table (reproq-django) deduplicate on.
        row = NewTask(
            spec=spec,
            spec_json=canonical_json(spec),
            spec_hash=str(source["spec_hash"]).strip(),
            task_path=source["task_path"] or str(spec["task_path"]),
            queue_name=source["queue_name"],
            priority=int(source["priority"]),
            max_attempts=int(source["max_attempts"]),
            timeout_seconds=int(source["timeout_seconds"]),
            lock_key=source["lock_key"],
            concurrency_key=source["concurrency_key"],
            concurrency_limit=int(source["concurrency_limit"]),
            metadata=metadata,
            backend_alias=source["backend_alias"],
        )
        new_id = insert_task(conn, row, dedup=False)
    return ReplayResult(new_id=new_id, source_id=source_id)


# --------------------------------------------------------------------------- cancel


def cancel(conn: Conn, result_id: int) -> CancelResult:
    """Cancel one task run.

    RUNNING → ``cancel_requested`` (the worker stops it within a heartbeat and fails it
    with kind ``cancelled``); READY/WAITING → CANCELLED at once, with ``finished_at`` and
    ``last_error`` set, together with its WAITING descendants; a finished row →
    :class:`ActionNotAllowed`.
    """
    with translate_errors(), conn.transaction():
        row = conn.execute(q("admin_lock_task"), {"result_id": result_id}).fetchone()
        if row is None:
            raise TaskNotFound(f"no task run with result_id {result_id}")
        outcome = cancel_outcome(result_id, TaskStatus(row["status"]))
        if outcome is CancelOutcome.CANCEL_REQUESTED:
            conn.execute(q("admin_request_cancel"), {"result_id": result_id})
            return CancelResult(result_id=result_id, status=outcome)
        rows = list(conn.execute(q("admin_cancel_now"), {"result_id": result_id}))
        workflow_ids = list({r["workflow_id"] for r in rows if r["workflow_id"] is not None})
        if workflow_ids:
            conn.execute(q("admin_fail_workflows"), {"workflow_ids": workflow_ids})
        others = tuple(sorted(int(r["result_id"]) for r in rows if r["result_id"] != result_id))
    return CancelResult(result_id=result_id, status=outcome, also_cancelled=others)


def bulk_cancel(conn: Conn, ids: Iterable[int]) -> BulkResult:
    """Cancel each id (see :func:`cancel`); finished or unknown ids are skipped with a reason.

    ``done`` lists every id that was cancelled or got a cancel request, including ids of
    the selection that were cancelled as descendants of an earlier one.
    """
    return cancel_each(ids, lambda result_id: cancel(conn, result_id))


# --------------------------------------------------------------------------- retry


def retry(conn: Conn, result_id: int) -> RetryResult:
    """Put a FAILED row back to READY: attempts 0, runnable now, error history kept.

    Chain descendants and a chord callback that the worker failed only because this row
    failed (last error kind ``workflow_failed``) go back to WAITING, so the workflow
    continues when this row succeeds. A row in another state →
    :class:`ActionNotAllowed`; an identical spec READY or RUNNING → :class:`AlreadyQueued`.
    """
    with translate_errors():
        for _ in range(3):
            try:
                with conn.transaction():
                    row = conn.execute(q("admin_retry"), {"result_id": result_id}).fetchone()
                    if row is None:
                        _explain_not_retryable(conn, result_id)
                    revived = [
                        int(r["result_id"])
                        for r in conn.execute(q("admin_revive_chain"), {"result_id": result_id})
                    ]
                    revived += [
                        int(r["result_id"])
                        for r in conn.execute(q("admin_revive_chord"), {"result_id": result_id})
                    ]
                return RetryResult(result_id=result_id, revived=tuple(sorted(revived)))
            except psycopg.errors.UniqueViolation as exc:
                if exc.diag.constraint_name != _ACTIVE_SPEC_INDEX:
                    raise
                state = conn.execute(q("admin_task_state"), {"result_id": result_id}).fetchone()
                assert state is not None  # the UPDATE just saw it
                spec_hash = str(state["spec_hash"]).strip()
                twin = conn.execute(
                    q("admin_find_active_twin"),
                    {"spec_hash": spec_hash, "result_id": result_id},
                ).fetchone()
                if twin is not None:
                    raise AlreadyQueued(spec_hash, int(twin["result_id"])) from None
                # The twin finished in between: try again.
    raise ActionNotAllowed(
        f"task {result_id} could not be retried: an identical task keeps becoming active"
    )


def _explain_not_retryable(conn: Conn, result_id: int) -> None:
    state = conn.execute(q("admin_task_state"), {"result_id": result_id}).fetchone()
    if state is None:
        raise TaskNotFound(f"no task run with result_id {result_id}")
    raise retry_refusal(result_id, state["status"])


def bulk_retry(conn: Conn, ids: Iterable[int]) -> BulkResult:
    """Retry each id (see :func:`retry`); others are skipped with a reason."""
    return retry_each(ids, lambda result_id: retry(conn, result_id))


def retry_all(
    conn: Conn,
    *,
    queue: str | None = None,
    task_path: str | None = None,
    limit: int | None = None,
) -> BulkResult:
    """Retry every FAILED row (oldest failure first), optionally by queue and task-path glob."""
    if limit is not None and limit < 1:
        raise UsageError(f"limit must be a positive integer, got {limit}")
    with translate_errors():
        ids = [
            int(r["result_id"])
            for r in conn.execute(
                q("admin_failed_ids"),
                {
                    "queue": queue,
                    "task_like": glob_to_like(task_path) if task_path else None,
                    "limit": limit,
                },
                prepare=False,
            )
        ]
    return bulk_retry(conn, ids)


# --------------------------------------------------------------------------- queues


def _queue_state(row: Mapping[str, Any] | None) -> QueueState:
    assert row is not None  # an upsert always returns its row
    return QueueState(
        queue=row["queue_name"],
        paused=bool(row["paused"]),
        paused_at=row["paused_at"],
        reason=row["reason"],
    )


def _check_queue(queue: str) -> None:
    if not queue or not queue.strip():
        raise UsageError("a queue name must not be empty")


def pause_queue(conn: Conn, queue: str, reason: str | None = None) -> QueueState:
    """Stop workers claiming from ``queue`` (RUNNING tasks finish); idempotent."""
    _check_queue(queue)
    with translate_errors():
        row = conn.execute(q("admin_pause_queue"), {"queue": queue, "reason": reason}).fetchone()
    return _queue_state(row)


def resume_queue(conn: Conn, queue: str) -> QueueState:
    """Let workers claim from ``queue`` again; idempotent."""
    _check_queue(queue)
    with translate_errors():
        row = conn.execute(q("admin_resume_queue"), {"queue": queue}).fetchone()
    return _queue_state(row)


# --------------------------------------------------------------------------- limits


def _check_limit_key(key: str) -> None:
    if not _LIMIT_KEY.match(key):
        raise UsageError(
            f"rate limit key {key!r} must be 'global', 'task:<task path>' or 'queue:<queue name>'"
        )


def set_limit(conn: Conn, key: str, rate: float, burst: int) -> RateLimit:
    """Create or change the token bucket ``key``: ``rate`` tokens/s (0 = no limit), ``burst``."""
    _check_limit_key(key)
    if isinstance(rate, bool) or not math.isfinite(rate) or rate < 0:
        raise UsageError(f"rate must be a number >= 0 (0 means no limit), got {rate!r}")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise UsageError(f"burst must be a positive integer, got {burst!r}")
    with translate_errors():
        row = conn.execute(
            q("admin_set_limit"), {"key": key, "rate": float(rate), "burst": burst}
        ).fetchone()
    assert row is not None
    return RateLimit.from_row(row)


def remove_limit(conn: Conn, key: str) -> LimitRemoved:
    """Delete a rate limit; the ``global`` row is kept and reset to rate 0 (no limit)."""
    _check_limit_key(key)
    with translate_errors():
        if key == "global":
            found = conn.execute(q("admin_reset_global_limit")).fetchone()
        else:
            found = conn.execute(q("admin_delete_limit"), {"key": key}).fetchone()
    if found is None:
        raise NotFound(f"no rate limit with key {key!r}")
    return LimitRemoved(key=key, reset=key == "global")


# --------------------------------------------------------------------------- prune


def _check_dry_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise UsageError(f"limit must be a positive integer, got {limit}")


def prune_expired(
    conn: Conn, *, limit: int | None = None, dry_run: bool = False, batch: int = _PRUNE_BATCH
) -> int:
    """Delete rows past ``expires_at`` that are not RUNNING; returns how many (would be) deleted.

    Deletes in batches of ``batch`` rows, each its own statement, so a large backlog
    never holds one long lock; rows locked by someone else are left for the next run.
    """
    _check_dry_limit(limit)
    _check_batch(batch)
    with translate_errors():
        if dry_run:
            row = conn.execute(q("admin_count_expired")).fetchone()
            n = int(row["n"]) if row else 0
            return min(n, limit) if limit is not None else n
        total = 0
        while limit is None or total < limit:
            want = batch if limit is None else min(batch, limit - total)
            deleted = conn.execute(q("admin_prune_expired"), {"batch": want}).rowcount
            total += deleted
            if deleted < want:
                break
    return total


def _check_batch(batch: int) -> None:
    if isinstance(batch, bool) or batch < 1:
        raise UsageError(f"batch must be a positive integer, got {batch}")


def prune_finished(
    conn: Conn,
    *,
    older_than: dt.timedelta,
    statuses: Sequence[TaskStatus | str] = FINISHED_STATUSES,
    dry_run: bool = False,
    batch: int = _PRUNE_BATCH,
) -> int:
    """Delete finished rows whose ``finished_at`` is older than ``older_than``.

    Only SUCCESSFUL, FAILED and CANCELLED rows can be pruned (anything else is a
    :class:`UsageError`); READY, RUNNING and WAITING rows are never touched. Deletes in
    batches of ``batch`` rows. Rows without ``finished_at`` are kept. Children of a pruned
    row keep existing with ``parent_id`` NULL.
    """
    if older_than < dt.timedelta(0):
        raise UsageError(f"older than must not be negative, got {older_than}")
    _check_batch(batch)
    wanted: list[str] = []
    for status in statuses:
        try:
            value = TaskStatus(str(status).upper())
        except ValueError:
            raise UsageError(f"unknown status {status!r}") from None
        if value not in FINISHED_STATUSES:
            raise UsageError(
                f"prune finished deletes only SUCCESSFUL, FAILED or CANCELLED rows, not {value}"
            )
        wanted.append(str(value))
    if not wanted:
        raise UsageError("prune finished needs at least one status")
    with translate_errors():
        cut = conn.execute(q("admin_prune_cutoff"), {"older_than": older_than}).fetchone()
        assert cut is not None
        params = {"statuses": wanted, "cutoff": cut["cutoff"], "batch": batch}
        if dry_run:
            row = conn.execute(q("admin_count_finished"), params, prepare=False).fetchone()
            return int(row["n"]) if row else 0
        total = 0
        while True:
            deleted = conn.execute(q("admin_prune_finished"), params, prepare=False).rowcount
            total += deleted
            if deleted < batch:
                break
    return total


def prune_workers(conn: Conn, *, older_than: dt.timedelta, dry_run: bool = False) -> int:
    """Forget workers not seen for ``older_than``; returns how many (would be) removed."""
    if older_than <= dt.timedelta(0):
        raise UsageError(f"older than must be a positive duration, got {older_than}")
    with translate_errors():
        if dry_run:
            row = conn.execute(
                q("admin_count_stale_workers"), {"older_than": older_than}
            ).fetchone()
            return int(row["n"]) if row else 0
        return conn.execute(q("admin_prune_workers"), {"older_than": older_than}).rowcount


# --------------------------------------------------------------------------- schedules


def set_schedule_enabled(conn: Conn, name: str, enabled: bool) -> ScheduleState:
    """Enable or disable a periodic task (beat skips disabled ones)."""
    with translate_errors():
        row = conn.execute(
            q("admin_set_schedule_enabled"), {"name": name, "enabled": enabled}
        ).fetchone()
    if row is None:
        raise NotFound(f"no schedule named {name!r}")
    return ScheduleState(name=row["name"], enabled=bool(row["enabled"]))


def run_schedule_now(conn: Conn, name: str) -> int:
    """Enqueue one run of a periodic task now; returns its result_id.

    The spec is the one beat would write, with ``periodic_name`` and ``scheduled_at`` =
    now, so it never collides with a scheduled fire time. The schedule's own
    ``last_run_at`` / ``next_run_at`` are left alone.
    """
    from reproq.schedule.beat import periodic_task

    now = dt.datetime.now(dt.UTC)
    with translate_errors():
        row = conn.execute(q("admin_get_schedule"), {"name": name}).fetchone()
        if row is None:
            raise NotFound(f"no schedule named {name!r}")
        try:
            task = periodic_task(row, now, metadata={"periodic_name": name, "manual_run": True})
        except InvalidSpec as exc:
            raise InvalidSpec(f"schedule {name!r}: {exc}") from None
        return insert_task(conn, task)
