"""Workflow progress when task runs end: releasing what waited on them, or failing it.

Called in the same transaction as the completion that caused it, so a crash can never
leave a finished parent with a child that is neither released nor failed.

- a success releases chain children (``wait_count`` - 1, READY at 0) and counts toward
  its group or chord; when every member of a chord succeeded its callback becomes READY
  (workflow ``WAITING_CALLBACK``), and the callback's own success ends the workflow
  ``SUCCESSFUL`` (a group without callback ends ``SUCCESSFUL`` with its last member);
- a terminal failure fails the workflow, its chord callback and every WAITING chain
  descendant (error kind ``workflow_failed``), so nothing waits forever.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg.rows import tuple_row

from reproq.db import Conn
from reproq.models import WorkflowStatus
from reproq.queries import q

__all__ = ["Ended", "advance"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Ended:
    """A task run that just became SUCCESSFUL or FAILED for good."""

    result_id: int
    workflow_id: uuid.UUID | None


def advance(
    conn: Conn,
    *,
    worker_id: str,
    succeeded: Sequence[Ended] = (),
    failed: Sequence[Ended] = (),
) -> list[int]:
    """Apply the workflow effects of these endings; returns the ids failed as a consequence.

    Must run inside the transaction that recorded the endings.
    """
    if succeeded:
        conn.execute(q("worker_release_children"), {"ids": [e.result_id for e in succeeded]})
    workflow_ids = sorted(
        {str(e.workflow_id) for e in (*succeeded, *failed) if e.workflow_id is not None}
    )
    doomed_callbacks: list[tuple[int, int]] = []
    if workflow_ids:
        doomed_callbacks = _count(conn, workflow_ids, succeeded, failed)
    if not failed and not doomed_callbacks:
        return []
    cur = conn.cursor(row_factory=tuple_row)
    cur.execute(
        q("worker_fail_waiting"),
        {
            "failed_ids": [e.result_id for e in failed],
            "callback_ids": [cb for cb, _ in doomed_callbacks],
            "callback_causes": [cause for _, cause in doomed_callbacks],
            "worker_id": worker_id,
        },
    )
    return [row[0] for row in cur]


def _count(
    conn: Conn,
    workflow_ids: list[str],
    succeeded: Sequence[Ended],
    failed: Sequence[Ended],
) -> list[tuple[int, int]]:
    """Update group/chord counters; returns (callback, cause) pairs that must fail."""
    cur = conn.cursor(row_factory=tuple_row)
    cur.execute(q("worker_lock_workflows"), {"workflow_ids": workflow_ids})
    locked = cur.fetchall()
    if not locked:
        return []  # plain chains have no workflow_runs row
    ok_by_wf: dict[uuid.UUID, list[int]] = {}
    bad_by_wf: dict[uuid.UUID, list[int]] = {}
    for e in succeeded:
        if e.workflow_id is not None:
            ok_by_wf.setdefault(e.workflow_id, []).append(e.result_id)
    for e in failed:
        if e.workflow_id is not None:
            bad_by_wf.setdefault(e.workflow_id, []).append(e.result_id)

    ids: list[str] = []
    successes: list[int] = []
    failures: list[int] = []
    statuses: list[str] = []
    release_ids: list[int] = []
    remaining: list[int] = []
    doomed: list[tuple[int, int]] = []
    for wf, expected, old_success, old_failure, callback, old_status in locked:
        ok = ok_by_wf.get(wf, [])
        bad = bad_by_wf.get(wf, [])
        members_ok = [rid for rid in ok if rid != callback]
        members_bad = [rid for rid in bad if rid != callback]
        callback_ok = callback is not None and callback in ok
        callback_bad = callback is not None and callback in bad
        success_count = old_success + len(members_ok)
        failure_count = old_failure + len(members_bad) + (1 if callback_bad else 0)
        status = old_status
        open_ = status in (WorkflowStatus.RUNNING, WorkflowStatus.WAITING_CALLBACK)
        if open_ and (members_bad or callback_bad):
            status = WorkflowStatus.FAILED
            if callback is not None and members_bad:
                doomed.append((callback, members_bad[0]))
        elif open_ and callback_ok:
            status = WorkflowStatus.SUCCESSFUL
        elif open_ and success_count >= expected:
            status = (
                WorkflowStatus.SUCCESSFUL if callback is None else WorkflowStatus.WAITING_CALLBACK
            )
        if callback is not None and members_ok and status != WorkflowStatus.FAILED:
            release_ids.append(callback)
            remaining.append(expected - success_count)
        ids.append(str(wf))
        successes.append(success_count)
        failures.append(failure_count)
        statuses.append(str(status))
    conn.execute(
        q("worker_update_workflows"),
        {
            "workflow_ids": ids,
            "success_counts": successes,
            "failure_counts": failures,
            "statuses": statuses,
        },
    )
    if release_ids:
        conn.execute(q("worker_release_callbacks"), {"ids": release_ids, "remaining": remaining})
    return doomed
