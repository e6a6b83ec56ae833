"""Recording ended attempts: one fenced UPDATE for a whole batch, workflow effects included.

Each :class:`Completion` says how one attempt ended: SUCCESSFUL with its return value,
READY again after a delay (a retry), or FAILED for good. :func:`flush` writes a batch with
a single ``worker_finish`` statement, fenced per row on (``leased_by``, ``attempts``,
``status = RUNNING``): an attempt whose lease is gone (reclaimed, or claimed anew by a
restarted worker with the same id) is silently not applied. Workflow effects of the rows
that ended run in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import Cursor
from psycopg.rows import tuple_row

from reproq.db import Conn
from reproq.models import TaskStatus
from reproq.queries import q
from reproq.workflow_progress import Ended, advance

__all__ = ["Completion", "applied_ids", "flush", "needs_transaction", "send"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Completion:
    """How one attempt ended, ready to be written."""

    result_id: int
    attempt: int
    status: TaskStatus  # SUCCESSFUL, READY (retry) or FAILED
    return_json: str | None = None  # JSON text of the return value (SUCCESSFUL only)
    error_json: str | None = None  # JSON text of the errors_json entry to append
    delay_seconds: float = 0.0  # READY only: run_after = now + delay
    last_error: str | None = None
    logs_uri: str | None = None
    workflow_id: uuid.UUID | None = None


def flush(conn: Conn, worker_id: str, completions: Sequence[Completion]) -> set[int]:
    """Write ``completions``; returns the ids that were applied (their lease was still held).

    Runs in the caller's transaction if there is one; opens one when workflow effects
    must be applied together with the completions.
    """
    if not completions:
        return set()
    if needs_transaction(completions):
        with conn.transaction():
            applied = _finish(conn, worker_id, completions)
            _workflows(conn, worker_id, completions, applied)
        return applied
    return _finish(conn, worker_id, completions)


def needs_transaction(completions: Sequence[Completion]) -> bool:
    """Whether recording these needs workflow effects (and so its own statements)."""
    return any(c.workflow_id is not None for c in completions)


def send(conn: Conn, worker_id: str, completions: Sequence[Completion]) -> Cursor[tuple[Any, ...]]:
    """Send the ``worker_finish`` statement without reading it (for pipelined callers).

    Only for batches without workflow effects (see :func:`needs_transaction`); read the
    applied ids with :func:`applied_ids`.
    """
    cur = conn.cursor(row_factory=tuple_row)
    if all(c.status is TaskStatus.SUCCESSFUL for c in completions):
        params = {
            "ids": [c.result_id for c in completions],
            "attempts": [c.attempt for c in completions],
            "returns": [c.return_json for c in completions],
            "logs": [c.logs_uri for c in completions],
            "worker_id": worker_id,
        }
        cur.execute(q("worker_finish_successes"), params, prepare=True)
    else:
        cur.execute(q("worker_finish"), _params(worker_id, completions), prepare=True)
    return cur


def applied_ids(cur: Cursor[tuple[Any, ...]]) -> set[int]:
    """The ids a sent ``worker_finish`` applied."""
    return {row[0] for row in cur}


def _finish(conn: Conn, worker_id: str, completions: Sequence[Completion]) -> set[int]:
    return applied_ids(send(conn, worker_id, completions))


def _params(worker_id: str, completions: Sequence[Completion]) -> dict[str, Any]:
    return {
        "ids": [c.result_id for c in completions],
        "attempts": [c.attempt for c in completions],
        "statuses": [str(c.status) for c in completions],
        "returns": [c.return_json for c in completions],
        "errors": [c.error_json for c in completions],
        "delays": [c.delay_seconds for c in completions],
        "last_errors": [c.last_error for c in completions],
        "logs": [c.logs_uri for c in completions],
        "worker_id": worker_id,
    }


def _workflows(
    conn: Conn, worker_id: str, completions: Sequence[Completion], applied: set[int]
) -> None:
    succeeded: list[Ended] = []
    failed: list[Ended] = []
    for c in completions:
        if c.workflow_id is None or c.result_id not in applied:
            continue
        if c.status == TaskStatus.SUCCESSFUL:
            succeeded.append(Ended(result_id=c.result_id, workflow_id=c.workflow_id))
        elif c.status == TaskStatus.FAILED:
            failed.append(Ended(result_id=c.result_id, workflow_id=c.workflow_id))
    if succeeded or failed:
        advance(conn, worker_id=worker_id, succeeded=succeeded, failed=failed)
