"""A worker that cannot start its slot threads fails in one line and leaves no registry row."""

from __future__ import annotations

import resource
import subprocess
import sys
import threading

import pytest

from reproq.db import Conn
from reproq.engine.worker import Worker
from reproq.errors import ConfigError
from tests.integration.worker_harness import ROOT, options, registered, wait_until, worker_env


def _slot_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("reproq-slot-")]


def test_a_thread_start_failure_is_a_clean_error_without_a_registry_row(
    dsn: str, conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The operating system refuses the fourth thread, as it does once a process reaches
    # its thread or memory limit.
    real_start = threading.Thread.start
    started: list[threading.Thread] = []

    def start(self: threading.Thread) -> None:
        if self.name.startswith("reproq-slot-") and len(started) >= 3:
            raise RuntimeError("can't start new thread")
        if self.name.startswith("reproq-slot-"):
            started.append(self)
        real_start(self)

    before = set(_slot_threads())
    monkeypatch.setattr(threading.Thread, "start", start)
    worker = Worker(dsn, options(worker_id="w-no-threads", concurrency=8))
    with pytest.raises(ConfigError) as info:
        worker.run()
    monkeypatch.undo()
    assert info.value.key == "concurrency"
    assert "cannot start 8 slot threads" in info.value.message
    assert "can't start new thread" in info.value.message
    assert not registered(conn, "w-no-threads")
    wait_until(lambda: not (set(_slot_threads()) - before), 10)


def _limit_address_space() -> None:
    # Enough for the interpreter and its imports, far too little for 4096 thread stacks.
    limit = 1536 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_the_cli_reports_a_machine_that_cannot_run_the_concurrency_in_one_line(
    dsn: str, conn: Conn
) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reproq",
            "worker",
            "--dsn",
            dsn,
            "--worker-id",
            "w-cli-threads",
            "--allowed-task-modules",
            "tests.tasks.",
            "--concurrency",
            "4096",
        ],
        cwd=ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_address_space,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("reproq: error: concurrency: cannot start 4096 slot threads")
    assert "Traceback" not in proc.stderr
    assert not registered(conn, "w-cli-threads")
