"""Chains, groups and chords, written as rows exactly as reproq-django expects them.

- chain: the first row READY, each next row WAITING with ``wait_count`` 1 and
  ``parent_id`` = the previous row; all share one ``workflow_id``.
- group: members READY sharing a ``workflow_id``, with a ``workflow_runs`` row.
- chord: a group whose callback is WAITING with ``wait_count`` = member count and is
  recorded as ``workflow_runs.callback_result_id``.

The worker releases WAITING rows as their parents or members succeed, and fails them
(kind ``workflow_failed``) when one fails for good.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from reproq.db import Conn
from reproq.errors import InvalidSpec
from reproq.models import TaskStatus
from reproq.producer.enqueue import insert_tasks, insert_workflow_run
from reproq.producer.signature import Signature


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkflowIds:
    """What a workflow enqueue wrote: its id, the member rows and the callback, if any."""

    workflow_id: uuid.UUID
    result_ids: tuple[int, ...]
    callback_id: int | None = None


def enqueue_chain(conn: Conn, steps: Sequence[Signature]) -> WorkflowIds:
    """Run ``steps`` one after the other; each starts only when the previous succeeded."""
    if not steps:
        raise InvalidSpec("a chain needs at least one step")
    workflow_id = uuid.uuid4()
    steps = _tagged(steps, workflow_id)
    ids: list[int] = []
    with conn.transaction():
        for i, step in enumerate(steps):
            if i == 0:
                row = step.to_new_task(workflow_id=workflow_id)
            else:
                row = step.to_new_task(
                    workflow_id=workflow_id,
                    parent_id=ids[-1],
                    wait_count=1,
                    status=TaskStatus.WAITING,
                )
            # No dedup inside a workflow: each step must be its own row.
            ids.extend(insert_tasks(conn, [row], dedup=False))
    return WorkflowIds(workflow_id=workflow_id, result_ids=tuple(ids))


def enqueue_group(conn: Conn, members: Sequence[Signature]) -> WorkflowIds:
    """Run ``members`` in parallel, tracked together in ``workflow_runs``."""
    return _fan_out(conn, members, callback=None)


def enqueue_chord(conn: Conn, members: Sequence[Signature], callback: Signature) -> WorkflowIds:
    """Run ``members`` in parallel, then ``callback`` once every member succeeded."""
    return _fan_out(conn, members, callback=callback)


def _fan_out(
    conn: Conn, members: Sequence[Signature], *, callback: Signature | None
) -> WorkflowIds:
    if not members:
        raise InvalidSpec("a group or chord needs at least one member")
    workflow_id = uuid.uuid4()
    members = _tagged(members, workflow_id)
    with conn.transaction():
        ids = insert_tasks(
            conn, [m.to_new_task(workflow_id=workflow_id) for m in members], dedup=False
        )
        callback_id: int | None = None
        if callback is not None:
            (callback_id,) = insert_tasks(
                conn,
                [
                    _tagged([callback], workflow_id, first=len(members))[0].to_new_task(
                        workflow_id=workflow_id,
                        wait_count=len(members),
                        status=TaskStatus.WAITING,
                    )
                ],
                dedup=False,
            )
        insert_workflow_run(
            conn, workflow_id, expected_count=len(members), callback_result_id=callback_id
        )
    return WorkflowIds(workflow_id=workflow_id, result_ids=tuple(ids), callback_id=callback_id)


def _tagged(steps: Sequence[Signature], workflow_id: uuid.UUID, first: int = 0) -> list[Signature]:
    """Give each step a spec of its own: identical steps (two pings in a group, a chain
    step released while a twin is queued) must not collide on the active spec_hash index."""
    return [
        step.with_options(
            extra_spec={**step.extra_spec, "workflow_id": str(workflow_id), "workflow_step": i}
        )
        for i, step in enumerate(steps, start=first)
    ]
