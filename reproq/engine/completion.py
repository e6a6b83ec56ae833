"""Recording ended attempts: one fenced UPDATE for a whole batch, workflow effects included.

Each :class:`Completion` says how one attempt ended: SUCCESSFUL with its return value,
READY again after a delay (a retry), or FAILED for good. A batch is written by the round
trip (:mod:`reproq.engine.round_trip`: the worker's claim usually rides along in the same
statement; here it claims nothing), fenced per row on (``leased_by``, ``attempts``,
``status = RUNNING``): an attempt whose lease is gone (reclaimed, or claimed anew by a
restarted worker with the same id) is silently not applied. Workflow effects of the rows
that ended run in the same transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import Cursor

from reproq.db import Conn
from reproq.engine import round_trip
from reproq.engine.lease import by_result_id
from reproq.engine.workflow_progress import Ended, advance
from reproq.models import TaskStatus

__all__ = ["Completion", "encode", "flush", "needs_transaction", "send"]


@dataclass(kw_only=True, slots=True)  # not frozen: one is built per attempt, and frozen costs
class Completion:
    """How one attempt ended, ready to be written (read-only by convention)."""

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
    """Send the recording statement without reading it (for pipelined callers).

    Only for batches without workflow effects (see :func:`needs_transaction`); read the
    applied ids with :func:`reproq.engine.round_trip.applied_ids`.
    """
    return round_trip.send(conn, worker_id=worker_id, done=encode(completions))


def encode(completions: Sequence[Completion]) -> str:
    """The ``done`` of a round trip (``%(rows)s`` of ``worker_sync``): each outcome keyed
    by result id.

    Written directly as text: the return value and the error entry already are JSON, and
    building the object this way costs a fraction of decoding and re-encoding them.
    """
    return by_result_id([(c.result_id, _entry(c)) for c in completions])


def _entry(c: Completion) -> str:
    text = f'{{"a":{c.attempt},"s":"{c.status}"'
    if c.return_json is not None:
        text += f',"r":{c.return_json}'
    if c.error_json is not None:
        text += f',"e":{c.error_json}'
    if c.status is TaskStatus.READY:
        text += f',"d":{float(c.delay_seconds)!r}'
    if c.last_error is not None:
        text += f',"m":{json.dumps(c.last_error)}'
    if c.logs_uri is not None:
        text += f',"l":{json.dumps(c.logs_uri)}'
    return text + "}"


def _finish(conn: Conn, worker_id: str, completions: Sequence[Completion]) -> set[int]:
    return round_trip.applied_ids(send(conn, worker_id, completions))


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
