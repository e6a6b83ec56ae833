"""A frozen database backend (what a network partition looks like to the worker).

SIGSTOP on the worker's own backend process leaves its TCP connection open and
acknowledged by the kernel, so nothing but a client-side deadline notices: the worker must
give that connection up, carry on on a new one, and still obey a second SIGTERM.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from reproq.db import Conn
from tests.integration.worker_harness import (
    ROOT,
    enqueue,
    running,
    start_cli_worker,
    stop_process,
    wait_status,
    wait_until,
    worker_env,
)


def _backend(conn: Conn, worker_id: str, *, besides: int = 0) -> int | None:
    """The pid of the worker's control connection (other than ``besides``), if connected."""
    found = _backends(conn, f"reproq-worker {worker_id}", besides=besides)
    return found[0] if found else None


def _backends(conn: Conn, application_name: str, *, besides: int = 0) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> %s",
        (application_name[:63], besides),
    ).fetchall()
    return [int(r["pid"]) for r in rows]


@contextlib.contextmanager
def _frozen(*pids: int) -> Iterator[None]:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def _last_seen(conn: Conn, worker_id: str) -> dt.datetime:
    found = conn.execute(
        "SELECT last_seen_at FROM reproq_workers WHERE worker_id = %s", (worker_id,)
    ).fetchone()
    assert found is not None
    value: dt.datetime = found["last_seen_at"]
    return value


def test_a_worker_whose_backend_freezes_heartbeats_and_claims_on_a_new_connection(
    dsn: str, conn: Conn
) -> None:
    with running(dsn, statement_timeout=1.0) as worker:
        backend = wait_until(lambda: _backend(conn, worker.worker_id), 10)
        with _frozen(backend):
            frozen_at = conn.execute("SELECT now() AS now").fetchone()["now"]  # type: ignore[index]
            rid = enqueue(conn, "add", 2, 3)
            done = wait_status(conn, rid, "SUCCESSFUL", timeout=60)
            assert done["return_json"] == 5
            wait_until(lambda: _last_seen(conn, worker.worker_id) > frozen_at, 30)
            assert _backend(conn, worker.worker_id, besides=backend) is not None


def test_a_cli_worker_stuck_on_a_frozen_backend_exits_on_the_second_sigterm(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    enqueue(conn, "marked_sleep", str(marker), 60.0)
    proc = start_cli_worker(dsn, "frozen-cli", "--shutdown-timeout", "60")
    try:
        wait_until(marker.exists, 30)
        backend = wait_until(lambda: _backend(conn, "frozen-cli"), 10)
        with _frozen(backend):
            time.sleep(1.5)  # heartbeats every 0.5s: the control thread now waits on the backend
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert proc.poll() is None, "a graceful stop waits for the running task"
            proc.send_signal(signal.SIGTERM)
            wait_until(lambda: proc.poll() is not None, 15)
        assert proc.returncode != 0
    finally:
        stop_process(proc, signal.SIGKILL)


def test_a_beat_stuck_on_a_frozen_backend_exits_on_the_second_sigterm(dsn: str, conn: Conn) -> None:
    command = [sys.executable, "-m", "reproq", "beat", "--dsn", dsn, "--interval", "0.2s"]
    proc = subprocess.Popen(
        [*command, "--name", "frozen-beat"],
        cwd=ROOT,
        env=worker_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        backends = wait_until(
            lambda: (
                _backends(conn, "reproq-beat-lock frozen-beat")
                + _backends(conn, "reproq-beat frozen-beat")
            ),
            20,
        )
        with _frozen(*backends):
            time.sleep(1.0)  # a tick every 0.2s: the beat now waits on a frozen backend
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            wait_until(lambda: proc.poll() is not None, 15)
    finally:
        stop_process(proc, signal.SIGKILL)
