"""`manage.py reproq worker|beat` on a database that only reproq-django has prepared.

A reproq-django project's database has the tables Django's ``migrate`` and ``manage.py
reproq migrate-worker`` made (``reproq_django_schema.sql``) and no reproq migration: the Go
worker ran on it as it was. reproq, started with the command lines the management command
builds, brings the schema up to date itself and runs what Django queued before it started.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from reproq.db import Conn, connect
from reproq.pg.migrations import current_version, latest_version
from tests.compat.test_django_command_line import (
    BEAT_DEFAULT,
    DJANGO_ENV,
    WORKER_DEFAULT,
    _argv,
    _env,
)
from tests.integration.worker_harness import registered, stop_process, wait_status

SCHEMA = Path(__file__).resolve().parent / "reproq_django_schema.sql"

# A row as reproq-django's backend inserts it: every column set by the ORM, none left to a
# database default (its tables have none).
_DJANGO_ROW = """
INSERT INTO task_runs (backend_alias, queue_name, priority, run_after, spec_json, spec_hash,
    task_path, status, enqueued_at, attempts, max_attempts, timeout_seconds, lock_key,
    concurrency_key, concurrency_limit, workflow_id, wait_count, worker_ids, errors_json,
    metadata_json, created_at, updated_at, cancel_requested)
VALUES ('default', 'default', 0, NULL, %(spec)s, repeat('c', 64), %(path)s, 'READY', now(),
    0, 3, 900, NULL, NULL, 0, NULL, 0, '[]', '[]', '{}', now(), now(), false)
RETURNING result_id
"""

_PERIODIC = """
INSERT INTO periodic_tasks (name, cron_expr, task_path, payload_json, queue_name, priority,
    max_attempts, concurrency_key, concurrency_limit, last_run_at, next_run_at, enabled,
    created_at, updated_at)
VALUES ('every-minute', '* * * * *', 'tests.tasks.sample.noop', '{"args": [], "kwargs": {}}',
    'default', 0, 3, NULL, 0, NULL, now() - interval '1 second', true, now(), now())
"""


def _django_database(dsn: str) -> Conn:
    conn = connect(dsn)
    conn.execute(SCHEMA.read_text())
    return conn


def _queue_from_django(conn: Conn) -> int:
    spec = {
        "v": 1,
        "task_path": "tests.tasks.probe.how_run",
        "args": [],
        "kwargs": {},
        "takes_context": False,
        "queue_name": "default",
        "priority": 0,
        "run_after": None,
        "exec": {"timeout_seconds": 900, "max_attempts": 3},
        "provenance": {"code_ref": None, "pip_lock_hash": None},
    }
    row = conn.execute(
        _DJANGO_ROW, {"spec": json.dumps(spec), "path": spec["task_path"]}
    ).fetchone()
    assert row is not None
    return int(row["result_id"])


def test_the_worker_migrates_a_django_prepared_database_and_runs_what_was_queued(
    empty_dsn: str, tmp_path: Path
) -> None:
    with _django_database(empty_dsn) as conn:
        rid = _queue_from_django(conn)
        proc = subprocess.Popen(
            _argv(WORKER_DEFAULT, dsn=empty_dsn),
            cwd=tmp_path,
            env=_env(DJANGO_ENV),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            done: dict[str, Any] = wait_status(conn, rid, ("SUCCESSFUL", "FAILED"), timeout=60)
        finally:
            code, err = stop_process(proc)
        assert done["status"] == "SUCCESSFUL", (done["errors_json"], err)
        assert done["return_json"]["main"] == "reproq_django.executor"
        assert code == 0, err
        assert current_version(conn) == latest_version()
        assert "applied 0001_baseline" in err


def test_beat_migrates_a_django_prepared_database_and_enqueues_its_schedules(
    empty_dsn: str, tmp_path: Path
) -> None:
    with _django_database(empty_dsn) as conn:
        conn.execute(_PERIODIC)
        done = subprocess.run(
            _argv(BEAT_DEFAULT, dsn=empty_dsn),
            cwd=tmp_path,
            env=_env(DJANGO_ENV),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "enqueued 1"
        assert current_version(conn) == latest_version()


def test_no_migrate_refuses_a_schema_that_is_behind_in_one_line(
    empty_dsn: str, tmp_path: Path
) -> None:
    with _django_database(empty_dsn) as conn:
        argv = [*_argv(WORKER_DEFAULT, dsn=empty_dsn), "--no-migrate", "--worker-id", "nm-1"]
        done = subprocess.run(
            argv,
            cwd=tmp_path,
            env=_env(DJANGO_ENV),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 1
        lines = [line for line in done.stderr.splitlines() if "error" in line.lower()]
        assert lines == [
            f"reproq: error: database schema is at version 0, this reproq needs "
            f"{latest_version()}: run `reproq migrate` (or start `reproq up`, which migrates)"
        ]
        assert current_version(conn) == 0
        assert not registered(conn, "nm-1")
