"""The allow-list cannot be walked around: a real worker, rows written with plain SQL.

Each escape names a shell command that would create a marker file; the row must end
FAILED with kind ``security_violation`` after one attempt, and the file must not exist,
whichever executor runs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reproq.db import Conn
from tests.integration.sql_rows import insert_row
from tests.integration.worker_harness import (
    ROOT,
    errors,
    row,
    stop_process,
    wait_status,
    wait_until,
    worker_env,
)

# Each would run its argument as a shell command (or Python code) if it resolved.
ESCAPES = [
    "reproq.demo.logging.os.system",  # a module reproq.demo imports
    "reproq.demo.random._os.system",  # a private name
    "tests.tasks.paths.system",  # os.system re-exported by an allowed module
    "tests.tasks.paths.subprocess.getoutput",  # a module attribute
    "tests.tasks.paths.run_system",  # a partial of os.system
    "reproq.demo.__builtins__.exec",  # dunder
    "reproq.demo.add.__class__.__init__.__globals__",  # a __class__/__globals__ chain
]


def _attempt_ended(conn: Conn, result_id: int) -> dict[str, Any] | None:
    found = row(conn, result_id)
    return found if found["attempts"] >= 1 and found["status"] != "RUNNING" else None


def _command(marker: Path, path: str) -> str:
    if path.endswith(".exec"):
        return f"import pathlib; pathlib.Path({str(marker)!r}).touch()"
    return f"touch {marker}"


@pytest.mark.parametrize("executor", ["thread", "process", "subprocess"])
def test_escapes_fail_as_security_violations_and_never_run(
    dsn: str, conn: Conn, tmp_path: Path, executor: str
) -> None:
    markers = {path: tmp_path / f"ran-{i}" for i, path in enumerate(ESCAPES)}
    ids = {path: insert_row(conn, path, [_command(markers[path], path)]) for path in ESCAPES}
    fine = insert_row(conn, "reproq.demo.add", [2, 3])
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reproq",
            "worker",
            "--dsn",
            dsn,
            "--worker-id",
            f"escapes-{executor}",
            "--executor",
            executor,
            # The subprocess executor's default module is reproq-django's: name ours.
            *(["--executor-module", "reproq.executor"] if executor == "subprocess" else []),
            "--concurrency",
            "2",
            "--allowed-task-modules",
            "reproq.demo.,tests.tasks.paths.",
            "--poll-interval",
            "0.05",
        ],
        cwd=ROOT,
        env=worker_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_status(conn, fine, "SUCCESSFUL", timeout=60)["return_json"] == 5
        for path, rid in ids.items():
            # One attempt ends it either way: FAILED for good, or (wrongly) run or retried.
            ended = wait_until(lambda rid=rid: _attempt_ended(conn, rid), timeout=60)
            assert ended["status"] == "FAILED", (path, ended["status"], errors(conn, rid))
            entries = errors(conn, rid)
            assert [e["kind"] for e in entries] == ["security_violation"], (path, entries)
    finally:
        code, stderr = stop_process(worker)
    assert code == 0, stderr
    ran = [path for path, marker in markers.items() if marker.exists()]
    assert ran == []
