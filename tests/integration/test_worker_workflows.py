"""Workflows: successes release what waits on them; terminal failures fail it, in one go."""

from __future__ import annotations

import itertools
from typing import Any

from reproq.db import Conn
from reproq.producer.signature import Signature
from reproq.producer.workflow import enqueue_chain, enqueue_chord, enqueue_group
from tests.integration.worker_harness import (
    errors,
    row,
    running,
    wait_all,
    wait_retry,
    wait_status,
)

SAMPLE = "tests.tasks.sample"


def _sig(func: str, *args: Any, **options: Any) -> Signature:
    return Signature(task_path=f"{SAMPLE}.{func}", args=args, **options)


def _workflow(conn: Conn, workflow_id: Any) -> dict[str, Any]:
    found = conn.execute(
        "SELECT * FROM workflow_runs WHERE workflow_id = %s", (workflow_id,)
    ).fetchone()
    assert found is not None
    return found


def test_a_chain_runs_its_steps_in_order(dsn: str, conn: Conn) -> None:
    ids = enqueue_chain(conn, [_sig("add", i, i) for i in range(4)]).result_ids
    assert [row(conn, i)["status"] for i in ids] == ["READY", "WAITING", "WAITING", "WAITING"]
    with running(dsn):
        wait_all(conn, ids, "SUCCESSFUL")
    rows = [row(conn, i) for i in ids]
    assert [r["return_json"] for r in rows] == [0, 2, 4, 6]
    for before, after in itertools.pairwise(rows):
        assert after["started_at"] >= before["finished_at"]
        assert after["wait_count"] == 0


def test_a_terminal_failure_in_a_chain_fails_every_waiting_descendant(dsn: str, conn: Conn) -> None:
    ids = enqueue_chain(
        conn,
        [
            _sig("add", 1, 1),
            _sig("fail", "nope", max_attempts=1),
            _sig("add", 2, 2),
            _sig("add", 3, 3),
        ],
    ).result_ids
    with running(dsn):
        wait_all(conn, ids[2:], "FAILED")
    assert row(conn, ids[0])["status"] == "SUCCESSFUL"
    assert row(conn, ids[1])["status"] == "FAILED"
    for rid in ids[2:]:
        failed = row(conn, rid)
        assert failed["attempts"] == 0 and failed["failed_at"] is not None
        (entry,) = errors(conn, rid)
        assert entry["kind"] == "workflow_failed" and str(ids[1]) in entry["message"]


def test_a_retried_chain_step_keeps_its_descendants_waiting(dsn: str, conn: Conn) -> None:
    ids = enqueue_chain(conn, [_sig("fail", "again", max_attempts=3), _sig("add", 1, 1)]).result_ids
    with running(dsn):
        wait_retry(conn, ids[0], 1)
    assert row(conn, ids[1])["status"] == "WAITING"


def test_a_chord_runs_its_callback_once_every_member_succeeded(dsn: str, conn: Conn) -> None:
    wf = enqueue_chord(conn, [_sig("add", i, 1) for i in range(3)], _sig("echo", "done"))
    assert wf.callback_id is not None
    assert row(conn, wf.callback_id)["wait_count"] == 3
    with running(dsn):
        wait_status(conn, wf.callback_id, "SUCCESSFUL")
    run = _workflow(conn, wf.workflow_id)
    assert run["status"] == "SUCCESSFUL"
    assert run["success_count"] == 3 and run["failure_count"] == 0
    callback = row(conn, wf.callback_id)
    assert max(row(conn, i)["finished_at"] for i in wf.result_ids) <= callback["started_at"]


def test_a_chord_waits_for_its_callback_between_members_and_callback(dsn: str, conn: Conn) -> None:
    wf = enqueue_chord(conn, [_sig("add", 1, 1)], _sig("echo", "cb"))
    assert wf.callback_id is not None
    conn.execute(
        "UPDATE task_runs SET queue_name = 'later' WHERE result_id = %s", (wf.callback_id,)
    )
    with running(dsn):
        wait_all(conn, wf.result_ids, "SUCCESSFUL")
        wait_status(conn, wf.callback_id, "READY")
    assert _workflow(conn, wf.workflow_id)["status"] == "WAITING_CALLBACK"
    with running(dsn, queues=("later",)):
        wait_status(conn, wf.callback_id, "SUCCESSFUL")
    assert _workflow(conn, wf.workflow_id)["status"] == "SUCCESSFUL"


def test_a_chord_member_failing_for_good_fails_the_callback_and_the_workflow(
    dsn: str, conn: Conn
) -> None:
    wf = enqueue_chord(
        conn, [_sig("add", 1, 1), _sig("fail", "member", max_attempts=1)], _sig("echo", "cb")
    )
    assert wf.callback_id is not None
    with running(dsn):
        wait_status(conn, wf.callback_id, "FAILED")
        wait_status(conn, wf.result_ids[0], "SUCCESSFUL")
    (entry,) = errors(conn, wf.callback_id)
    assert entry["kind"] == "workflow_failed" and str(wf.result_ids[1]) in entry["message"]
    run = _workflow(conn, wf.workflow_id)
    assert run["status"] == "FAILED" and run["failure_count"] == 1


def test_a_group_succeeds_with_its_last_member(dsn: str, conn: Conn) -> None:
    wf = enqueue_group(conn, [_sig("add", i, 2) for i in range(3)])
    with running(dsn):
        wait_all(conn, wf.result_ids, "SUCCESSFUL")
    run = _workflow(conn, wf.workflow_id)
    assert run["status"] == "SUCCESSFUL" and run["success_count"] == 3
