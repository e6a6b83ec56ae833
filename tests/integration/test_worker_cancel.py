"""Cancel requests stop a running task within about a heartbeat and FAIL it as cancelled."""

from __future__ import annotations

from pathlib import Path

import pytest

from reproq.db import Conn
from reproq.executors import make_executor
from reproq.executors.mock import MockExecutor
from reproq.ops import admin
from tests.integration.worker_harness import (
    enqueue,
    errors,
    running,
    wait_status,
    wait_until,
)


def _cancel_when_running(conn: Conn, rid: int) -> None:
    wait_status(conn, rid, "RUNNING")
    admin.cancel(conn, rid)


def test_a_cooperative_thread_task_stops_on_cancel_and_is_not_retried(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    rid = enqueue(conn, "cooperative_sleep", 30.0, str(marker), max_attempts=5)
    with running(dsn, heartbeat_seconds=0.2):
        wait_until(marker.exists)
        _cancel_when_running(conn, rid)
        done = wait_status(conn, rid, "FAILED", timeout=5)
    assert done["attempts"] == 1
    (entry,) = errors(conn, rid)
    assert entry["kind"] == "cancelled"


def test_a_thread_task_that_ignores_the_cancel_still_sees_it_requested(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    rid = enqueue(conn, "ignore_cancel", 1.0, str(marker))
    with running(dsn, heartbeat_seconds=0.1):
        wait_until(marker.exists)
        _cancel_when_running(conn, rid)
        done = wait_status(conn, rid, ["SUCCESSFUL", "FAILED"], timeout=5)
    # It finished anyway (threads cannot be killed), and it could tell it was asked.
    assert done["status"] == "SUCCESSFUL" and done["return_json"] == "cancel seen"


def test_a_mock_task_stops_on_cancel(dsn: str, conn: Conn) -> None:
    rid = enqueue(conn, "noop", max_attempts=3)
    with running(dsn, executor=MockExecutor(duration=30.0), heartbeat_seconds=0.2):
        _cancel_when_running(conn, rid)
        done = wait_status(conn, rid, "FAILED", timeout=5)
    assert done["attempts"] == 1 and errors(conn, rid)[0]["kind"] == "cancelled"


@pytest.mark.parametrize("executor", ["process", "subprocess"])
def test_a_task_in_a_child_process_is_killed_on_cancel(dsn: str, conn: Conn, executor: str) -> None:
    rid = enqueue(conn, "sleep", 60.0, max_attempts=3)
    options = {"processes": 2} if executor == "process" else {}
    with running(dsn, executor=make_executor(executor, options), heartbeat_seconds=0.2):
        _cancel_when_running(conn, rid)
        done = wait_status(conn, rid, "FAILED", timeout=15)
    assert done["attempts"] == 1 and errors(conn, rid)[0]["kind"] == "cancelled"


def test_mock_executor_durations_and_failures_drive_outcomes(dsn: str, conn: Conn) -> None:
    ok = [enqueue(conn, "noop", i) for i in range(5)]
    with running(dsn, executor=MockExecutor(duration=(0.01, 0.05), failure_rate=0.0)):
        for rid in ok:
            done = wait_status(conn, rid, "SUCCESSFUL")
            assert done["return_json"]["mock"] is True
    bad = enqueue(conn, "noop", "x", max_attempts=1)
    with running(dsn, executor=MockExecutor(failure_rate=1.0, seed=1)):
        wait_status(conn, bad, "FAILED")
    assert errors(conn, bad)[0]["exception_class"] == "MockFailure"
