"""With a logs directory, every attempt has a log file named in ``logs_uri``.

reproq-django's ``manage.py reproq logs --id N`` reads the file ``logs_uri`` names. The Go
Reproq Worker writes ``<logs_dir>/task-<id>-attempt-<n>.log`` for every attempt it runs
(its executor's stdout always holds at least the result envelope), laid out as
``STDOUT:\\n…\\nSTDERR:\\n…\\n`` (``internal/runner/runner.go``, ``persistExecutionLogs``,
commit 544aae0). reproq does the same for every attempt it records, including attempts
that printed nothing and attempts the worker ended itself.
"""

from __future__ import annotations

from pathlib import Path

from reproq.db import Conn
from tests.integration.worker_harness import enqueue, make_due, running, wait_retry, wait_status


def test_a_quiet_task_still_leaves_a_log_file_for_its_attempt(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    rid = enqueue(conn, "add", 1, 2)
    with running(dsn, logs_dir=str(tmp_path)):
        done = wait_status(conn, rid, "SUCCESSFUL")
    path = Path(done["logs_uri"])
    assert path == tmp_path / f"task-{rid}-attempt-1.log"
    assert path.read_text() == "STDOUT:\n\nSTDERR:\n\n"


def test_each_attempt_of_a_retried_task_has_its_own_log_file(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    rid = enqueue(conn, "fail_until", 2, max_attempts=3)
    with running(dsn, logs_dir=str(tmp_path)):
        first = wait_retry(conn, rid, 1)
        assert first["logs_uri"] == str(tmp_path / f"task-{rid}-attempt-1.log")
        make_due(conn, rid)
        done = wait_status(conn, rid, "SUCCESSFUL")
    assert done["logs_uri"] == str(tmp_path / f"task-{rid}-attempt-2.log")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"task-{rid}-attempt-1.log",
        f"task-{rid}-attempt-2.log",
    ]


def test_an_attempt_the_worker_refused_has_a_log_file_saying_why(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    rid = enqueue(conn, "add", 1, 2)
    conn.execute("UPDATE task_runs SET cancel_requested = true WHERE result_id = %s", (rid,))
    with running(dsn, logs_dir=str(tmp_path)):
        done = wait_status(conn, rid, "FAILED")
    assert Path(done["logs_uri"]).read_text() == (
        "WORKER:\ncancelled: cancel requested before it started\n"
    )
