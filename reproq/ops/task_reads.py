"""Reads of task runs: filtered listings, one run in full with its lineage, and the
dead-letter (FAILED) listing.

Every function takes an open connection and only reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reproq.db import Conn, translate_errors
from reproq.errors import TaskNotFound, UsageError
from reproq.models import TaskStatus
from reproq.ops._reads import MAX_LIST_LIMIT, require_positive, str_tuple
from reproq.ops.read_models import (
    AttemptError,
    TaskDetail,
    TaskOrder,
    TaskRef,
    TaskRow,
    TriageRow,
    WorkflowInfo,
)
from reproq.ops.task_filter import TaskFilter, glob_to_like
from reproq.queries import q

__all__ = ["get_task", "list_tasks", "triage_list"]

_LINEAGE_LIMIT = 200


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
        worker_ids=str_tuple(r["worker_ids"]),
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
    require_positive("limit", limit, most=MAX_LIST_LIMIT)
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
        worker_ids=str_tuple(r["worker_ids"]),
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
    require_positive("limit", limit, most=MAX_LIST_LIMIT)
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
