"""A worker's task processes die with it: a SIGKILLed worker leaves nothing running."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from reproq.db import Conn
from tests.integration.worker_harness import enqueue, start_cli_worker, stop_process, wait_until


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def test_killing_a_subprocess_worker_kills_the_process_group_of_its_task(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    enqueue(
        conn,
        "tests.tasks.executors.spawn_grandchild_and_sleep",
        str(pid_file),
        120,
        timeout_seconds=600,
    )
    worker = start_cli_worker(
        dsn, "lifeline", "--executor", "subprocess", "--executor-module", "reproq.executor"
    )
    pgid = 0
    try:
        wait_until(pid_file.exists, 30)
        child, grandchild = (int(pid) for pid in pid_file.read_text().split())
        pgid = os.getpgid(child)
        assert {child, grandchild} <= set(_group_members(pgid))
        worker.kill()
        worker.wait()
        wait_until(lambda: not _group_members(pgid), 5)
    finally:
        stop_process(worker, signal.SIGKILL)
        if pgid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)


def test_a_task_of_a_frozen_subprocess_worker_does_not_outlive_its_timeout(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    enqueue(
        conn,
        "tests.tasks.executors.spawn_grandchild_and_sleep",
        str(pid_file),
        120,
        timeout_seconds=2,
    )
    worker = start_cli_worker(
        dsn, "lifeline-frozen", "--executor", "subprocess", "--executor-module", "reproq.executor"
    )
    pgid = 0
    try:
        wait_until(pid_file.exists, 30)
        pgid = os.getpgid(int(pid_file.read_text().split()[0]))
        worker.send_signal(signal.SIGSTOP)
        # The timeout, the executor's grace (5s) and the lifeline's margin, generously.
        wait_until(lambda: not _group_members(pgid), 30)
    finally:
        worker.send_signal(signal.SIGCONT)
        stop_process(worker, signal.SIGKILL)
        if pgid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
