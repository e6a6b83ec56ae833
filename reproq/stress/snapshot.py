"""What a torture run leaves behind, pulled from the database as plain values.

The checker (:mod:`reproq.stress.checker`) is a pure function over a :class:`Snapshot`:
the task rows the run created, the ledger of executions the tasks recorded themselves,
the workflow rows, and a few facts only the harness knows (which ids it enqueued, which
it cancelled and when, when each worker process died, when the queue was last seen
drained). Keeping the data plain makes the checker testable with hand-made rows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reproq.db import Conn, translate_errors
from reproq.queries import q

__all__ = [
    "AttemptError",
    "Execution",
    "RunFacts",
    "Snapshot",
    "TaskRecord",
    "WorkflowRecord",
    "load_snapshot",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class AttemptError:
    """One entry of a task row's ``errors_json``: how the database says an attempt ended."""

    kind: str
    attempt: int | None = None
    worker_id: str | None = None
    at: dt.datetime | None = None
    message: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskRecord:
    """The columns of one ``task_runs`` row that the invariants look at."""

    result_id: int
    status: str
    kind: str = ""
    """The workload kind (``fast``, ``flaky``, ``locked``…) from the spec's kwargs."""
    queue_name: str = "default"
    attempts: int = 0
    max_attempts: int = 1
    enqueued_at: dt.datetime | None = None
    run_after: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    lock_key: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int = 0
    parent_id: int | None = None
    workflow_id: str | None = None
    wait_count: int = 0
    worker_ids: tuple[str, ...] = ()
    errors: tuple[AttemptError, ...] = ()
    return_token: str | None = None
    """The ``token`` of the return value: names the execution whose result was stored."""
    leased_by: str | None = None
    cancel_requested: bool = False
    periodic_name: str | None = None
    scheduled_at: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Execution:
    """One execution of a task body, as the task itself recorded it in the ledger."""

    token: str
    result_id: int
    attempt: int
    worker_id: str
    pid: int
    ancestors: tuple[int, ...] = ()
    """The parent and grandparent of ``pid``: the worker process that started a task
    process (through a fork server, for the ``process`` executor)."""
    kind: str = ""
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    """None when the process died (or the run ended) before the body finished."""
    outcome: str | None = None
    """``ok``, ``error`` or ``cancelled`` as the body saw it; None when unfinished."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkflowRecord:
    """One ``workflow_runs`` row (a group or a chord)."""

    workflow_id: str
    expected_count: int
    success_count: int
    failure_count: int
    callback_result_id: int | None
    status: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RunFacts:
    """What only the harness knows about the run."""

    enqueued_ids: frozenset[int] = frozenset()
    """Every result_id the harness was told it enqueued (workflow rows included)."""
    cancel_requests: Mapping[int, dt.datetime] = field(default_factory=dict)
    """result_id → when the harness's cancel call returned (database time)."""
    cancel_attempts: Mapping[int, int] = field(default_factory=dict)
    """result_id → ``attempts`` of the row when it was cancelled (read under the same row
    lock). A RUNNING row's current attempt may still begin executing after the cancel (it
    was claimed before, and is stopped within a heartbeat); no later attempt may."""
    process_exits: Mapping[int, dt.datetime] = field(default_factory=dict)
    """Worker pid → when the harness saw the process gone (ends the executions it hosted)."""
    quiesced_at: dt.datetime | None = None
    """Database time at which the drain saw no due READY and no RUNNING row; None when
    the drain gave up."""
    checked_at: dt.datetime
    """Database time of the snapshot."""
    schedule_names: frozenset[str] = frozenset()
    """The periodic schedules the run created."""
    processes: int = 0
    """Worker and beat processes the harness started."""
    unexpected_exits: tuple[str, ...] = ()
    """Worker or beat processes that ended although the harness never signalled them."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """Everything the checker needs, in one value."""

    tasks: tuple[TaskRecord, ...]
    executions: tuple[Execution, ...]
    workflows: tuple[WorkflowRecord, ...]
    facts: RunFacts


def load_snapshot(conn: Conn, *, first_id: int, facts: RunFacts) -> Snapshot:
    """Read the rows created after ``first_id`` (the run's), its ledger and workflows."""
    with translate_errors():
        tasks = tuple(
            _task(row) for row in conn.execute(q("stress_snapshot_tasks"), {"first_id": first_id})
        )
        executions = tuple(_execution(row) for row in conn.execute(q("stress_snapshot_ledger")))
        workflows = tuple(
            _workflow(row)
            for row in conn.execute(q("stress_snapshot_workflows"), {"first_id": first_id})
        )
    return Snapshot(tasks=tasks, executions=executions, workflows=workflows, facts=facts)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _time(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _errors(raw: Any) -> tuple[AttemptError, ...]:
    entries = _json(raw) or []
    out: list[AttemptError] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        attempt = entry.get("attempt")
        out.append(
            AttemptError(
                kind=str(entry.get("kind") or ""),
                attempt=int(attempt) if isinstance(attempt, int | float) else None,
                worker_id=entry.get("worker_id"),
                at=_time(entry.get("at")),
                message=str(entry.get("message") or "")[:200],
            )
        )
    return tuple(out)


def _token(raw: Any) -> str | None:
    value = _json(raw)
    if isinstance(value, dict) and isinstance(value.get("token"), str):
        return str(value["token"])
    return None


def _task(row: Mapping[str, Any]) -> TaskRecord:
    worker_ids = _json(row["worker_ids"]) or []
    return TaskRecord(
        result_id=int(row["result_id"]),
        status=str(row["status"]),
        kind=str(row["kind"] or ""),
        queue_name=str(row["queue_name"]),
        attempts=int(row["attempts"]),
        max_attempts=int(row["max_attempts"]),
        enqueued_at=row["enqueued_at"],
        run_after=row["run_after"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        lock_key=row["lock_key"],
        concurrency_key=row["concurrency_key"],
        concurrency_limit=int(row["concurrency_limit"] or 0),
        parent_id=row["parent_id"],
        workflow_id=str(row["workflow_id"]) if row["workflow_id"] is not None else None,
        wait_count=int(row["wait_count"] or 0),
        worker_ids=tuple(str(w) for w in worker_ids) if isinstance(worker_ids, list) else (),
        errors=_errors(row["errors_json"]),
        return_token=_token(row["return_json"]),
        leased_by=row["leased_by"],
        cancel_requested=bool(row["cancel_requested"]),
        periodic_name=row["periodic_name"],
        scheduled_at=row["scheduled_at"],
    )


def _execution(row: Mapping[str, Any]) -> Execution:
    return Execution(
        token=str(row["token"]),
        result_id=int(row["result_id"]),
        attempt=int(row["attempt"]),
        worker_id=str(row["worker_id"]),
        pid=int(row["pid"]),
        ancestors=tuple(int(p) for p in row["ancestors"] or ()),
        kind=str(row["kind"] or ""),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        outcome=row["outcome"],
    )


def _workflow(row: Mapping[str, Any]) -> WorkflowRecord:
    return WorkflowRecord(
        workflow_id=str(row["workflow_id"]),
        expected_count=int(row["expected_count"]),
        success_count=int(row["success_count"]),
        failure_count=int(row["failure_count"]),
        callback_result_id=row["callback_result_id"],
        status=str(row["status"]),
    )
