"""Shutdown: drain, then give unfinished leases back (READY at once, attempt not charged)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from reproq.db import Conn
from reproq.engine.worker import Worker
from tests.integration.worker_harness import (
    enqueue,
    options,
    row,
    start_cli_worker,
    stop_process,
    wait_status,
    wait_until,
)


def _started(worker: Worker) -> Worker:
    worker.start()
    wait_until(worker.ready.is_set, 20)
    return worker


def test_tasks_that_finish_within_the_shutdown_timeout_complete(dsn: str, conn: Conn) -> None:
    rid = enqueue(conn, "sleep", 1.0)
    worker = _started(Worker(dsn, options(shutdown_timeout=10)))
    wait_status(conn, rid, "RUNNING")
    worker.request_stop()
    assert worker.join(15)
    done = row(conn, rid)
    assert done["status"] == "SUCCESSFUL" and done["attempts"] == 1


def test_a_stopping_worker_claims_nothing_new(dsn: str, conn: Conn) -> None:
    first = enqueue(conn, "sleep", 1.0)
    worker = _started(Worker(dsn, options(concurrency=2, shutdown_timeout=10)))
    wait_status(conn, first, "RUNNING")
    worker.request_stop()
    late = enqueue(conn, "add", 1, 1)
    assert worker.join(15)
    assert row(conn, late)["status"] == "READY" and row(conn, late)["attempts"] == 0


def test_long_tasks_are_stopped_at_the_timeout_and_their_leases_given_back(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    cooperative = enqueue(conn, "cooperative_sleep", 30.0)
    stubborn = enqueue(conn, "sleep", 30.0)  # ignores the stop: its lease goes back anyway
    worker = _started(Worker(dsn, options(concurrency=2, shutdown_timeout=0.5)))
    wait_status(conn, cooperative, "RUNNING")
    wait_status(conn, stubborn, "RUNNING")
    started = time.monotonic()
    worker.request_stop()
    assert worker.join(15)
    assert time.monotonic() - started < 6
    for rid in (cooperative, stubborn):
        back = row(conn, rid)
        assert back["status"] == "READY", back
        assert back["attempts"] == 0  # not charged
        assert back["leased_by"] is None and back["leased_until"] is None
        assert back["errors_json"] == []
    assert row(conn, cooperative)["run_after"] is None  # stopped: claimable at once
    # Still executing in a thread nobody can kill: held back until this process has had
    # time to exit, so the run never executes twice at once.
    held = conn.execute(
        "SELECT run_after > now() + interval '5 seconds' AS later FROM task_runs "
        "WHERE result_id = %s",
        (stubborn,),
    ).fetchone()
    assert held == {"later": True}
    assert worker.stats().given_back == 2
    running = conn.execute("SELECT count(*) AS n FROM task_runs WHERE status = 'RUNNING'")
    assert running.fetchone() == {"n": 0}


def test_a_forced_stop_gives_leases_back_at_once(dsn: str, conn: Conn) -> None:
    rid = enqueue(conn, "sleep", 30.0)
    worker = _started(Worker(dsn, options(shutdown_timeout=60)))
    wait_status(conn, rid, "RUNNING")
    worker.request_stop()
    time.sleep(0.2)
    started = time.monotonic()
    worker.request_stop()  # the second request forces
    assert worker.join(10)
    assert time.monotonic() - started < 3
    back = row(conn, rid)
    assert back["status"] == "READY" and back["attempts"] == 0


def test_sigterm_drains_a_cli_worker_and_gives_back_what_did_not_finish(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    rid = enqueue(conn, "marked_sleep", str(marker), 30.0)
    proc = start_cli_worker(dsn, "cli-term", "--shutdown-timeout", "0.5s")
    wait_until(marker.exists, 30)
    code, err = stop_process(proc, signal.SIGTERM)
    assert code == 0, err
    back = row(conn, rid)
    assert back["status"] == "READY" and back["attempts"] == 0 and back["leased_by"] is None


def test_a_second_signal_forces_the_cli_worker_to_exit_at_once(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    rid = enqueue(conn, "marked_sleep", str(marker), 30.0)
    proc = start_cli_worker(dsn, "cli-int", "--shutdown-timeout", "60")
    wait_until(marker.exists, 30)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # still draining
    started = time.monotonic()
    code, err = stop_process(proc, signal.SIGINT)
    assert code == 0, err
    assert time.monotonic() - started < 5
    back = row(conn, rid)
    assert back["status"] == "READY" and back["attempts"] == 0
