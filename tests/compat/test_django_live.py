"""A real reproq-django project: enqueue from Django, run with reproq, read back from Django.

The project in ``django_project/`` (copied to a temporary directory) uses reproq-django's
backend on a fresh database. Django's ``migrate`` and ``reproq migrate`` build the schema
together; tasks are enqueued through Django's Tasks API and executed by ``reproq worker``
through ``python -m reproq_django.executor`` with the project's interpreter; statuses,
return values, errors, cancellation and log files are read back through Django. Needs
``REPROQ_DJANGO_PYTHON`` (see ``django_python.py``); skipped without it.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from reproq.db import connect
from reproq.producer.client import Client
from tests.compat.django_python import django_python
from tests.integration.up_harness import clean_env

PROJECT = Path(__file__).resolve().parent / "django_project"


class _Meta:
    app_label = "auth"
    model_name = "user"


class _User:
    """What reproq's encoder reads of a Django model instance."""

    _meta = _Meta()
    pk = 42


def _run(cmd: list[str], cwd: Path, env: Mapping[str, str]) -> str:
    done = subprocess.run(
        cmd, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _wait_finished(dsn: str, ids: list[int], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    with connect(dsn) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) AS n FROM task_runs WHERE result_id = ANY(%s)"
                " AND status IN ('SUCCESSFUL', 'FAILED')",
                (ids,),
            ).fetchone()
            if row is not None and row["n"] == len(ids):
                return
            assert time.monotonic() < deadline, "tasks did not finish in time"
            time.sleep(0.2)


def test_tasks_enqueued_from_django_run_with_reproq_and_read_back_in_django(
    empty_dsn: str, tmp_path: Path
) -> None:
    python = django_python()
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    env = clean_env({"COMPAT_DSN": empty_dsn, "DJANGO_SETTINGS_MODULE": "compatproj.settings"})
    _run([python, "manage.py", "migrate", "--noinput"], project, env)
    _run([sys.executable, "-m", "reproq", "migrate", "--dsn", empty_dsn], project, env)
    _run([python, "manage.py", "reproq", "migrate-worker"], project, env)

    _run([python, "drive.py", "enqueue", "ids.json"], project, env)
    enqueued: dict[str, Any] = json.loads((project / "ids.json").read_text())
    ids = {name: int(entry["id"]) for name, entry in enqueued.items()}

    # The same task enqueued from reproq is the same spec: it deduplicates onto Django's row.
    when = "2025-05-05T01:02:03.456789+00:00"
    with Client(empty_dsn) as client:
        twin = client.enqueue(
            "compatapp.tasks.describe",
            [
                dt.datetime.fromisoformat(when),
                Decimal("12.340"),
                uuid.UUID("123e4567-e89b-12d3-a456-426614174000"),
                dt.timedelta(hours=3),
                dt.date(2025, 5, 5),
                dt.time(1, 2, 3, 456789),
                _User(),
            ],
            timeout_seconds=60,
        )
    assert twin == ids["describe"]

    _run([python, "manage.py", "reproq", "cancel", "--id", str(ids["cancelled"])], project, env)

    logs = tmp_path / "logs"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reproq",
            "worker",
            "--dsn",
            empty_dsn,
            "--allowed-task-modules",
            "compatapp.tasks.",
            "--executor",
            "subprocess",
            "--python",
            python,
            "--executor-module",
            "reproq_django.executor",
            "--logs-dir",
            str(logs),
            "--poll-interval",
            "0.1",
        ],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_finished(empty_dsn, list(ids.values()))
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err.decode(errors="replace")

    read = json.loads(_run([python, "drive.py", "read", "ids.json"], project, env))
    assert read["add"]["status"] == "SUCCESSFUL" and read["add"]["result"] == 5
    assert read["describe"]["status"] == "SUCCESSFUL"
    assert read["describe"]["result"] == {
        "when": "2025-05-05T01:02:03.456Z",
        "amount": "12.340",
        "token": "123e4567-e89b-12d3-a456-426614174000",
        "delta": 10800.0,
        "day": "2025-05-05",
        "at": "01:02:03.456",
        "user": "User:42:ada",
    }
    boom = read["boom"]
    assert (boom["status"], boom["attempts"], boom["last_error"]) == ("FAILED", 1, "bad input")
    (error,) = boom["errors"]
    assert (error["kind"], error["exception_class"]) == ("app_error", "ValueError")
    cancelled = read["cancelled"]
    assert cancelled["status"] == "FAILED"
    assert [e["kind"] for e in cancelled["errors"]] == ["cancelled"]
    assert read["shout"]["result"] == "HI"
    for name, entry in read.items():
        assert entry["leased_by"] is None, name
        assert entry["logs_uri"] == str(logs / f"task-{ids[name]}-attempt-1.log"), name

    shown = _run([python, "manage.py", "reproq", "logs", "--id", str(ids["shout"])], project, env)
    assert shown.startswith("STDOUT:") and "err: hi" in shown
