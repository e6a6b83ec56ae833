"""``reproq up`` never touches ``periodic_tasks`` rows that a reproq config did not create.

A Django project keeps its periodic tasks in ``periodic_tasks`` too (reproq-django's
``PeriodicTask`` model, its ``@recurring`` sync, the Django admin). ``[[schedules]]`` in a
reproq config own only the rows they created: those rows are marked, and only marked
rows are updated or disabled by a config.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reproq.db import Conn
from tests.integration.up_harness import running_up, toml_string

NEXT = datetime(2031, 1, 1, tzinfo=UTC)


def _add_like_django(conn: Conn, name: str, *, enabled: bool = True) -> None:
    """A row as reproq-django's PeriodicTask model writes it (its columns only)."""
    conn.execute(
        "INSERT INTO periodic_tasks (name, cron_expr, task_path, payload_json, queue_name,"
        " priority, max_attempts, concurrency_key, concurrency_limit, last_run_at,"
        " next_run_at, enabled, created_at, updated_at)"
        " VALUES (%s, '0 3 * * *', 'myapp.tasks.nightly', %s::jsonb, 'default', 0, 3, NULL,"
        " 0, NULL, %s, %s, now(), now())",
        (name, json.dumps({"args": [], "kwargs": {"full": True}}), NEXT, enabled),
    )


def _rows(conn: Conn) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in conn.execute("SELECT * FROM periodic_tasks").fetchall()}


def _config(path: Path, dsn: str, schedules: str) -> Path:
    path.write_text(
        f"""[database]
dsn = {toml_string(dsn)}

[worker]
allowed_task_modules = ["reproq.demo."]
shutdown_timeout = "2s"

[[pools]]
name = "default"
queues = ["default"]
concurrency = 1

[beat]
enabled = false

{schedules}
""",
        encoding="utf-8",
    )
    return path


def _schedule(name: str, args: str = "[1, 2]") -> str:
    return f"""
[[schedules]]
name = "{name}"
cron = "0 0 1 1 *"
task = "reproq.demo.add"
args = {args}
"""


def _up_once(config: Path, log: Path) -> str:
    with running_up(config, log) as up:
        up.wait_ready()
        assert up.stop() == 0
        return up.log()


def test_reproq_up_leaves_django_rows_alone_and_disables_only_its_own(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    _add_like_django(conn, "django-nightly")
    _add_like_django(conn, "django-paused", enabled=False)
    django_rows = _rows(conn)
    config = _config(tmp_path / "up.toml", dsn, _schedule("yearly-a") + _schedule("yearly-b"))
    log = _up_once(config, tmp_path / "first.log")
    assert "schedules disabled" not in log
    after = _rows(conn)
    assert {name: after[name] for name in django_rows} == django_rows
    assert after["yearly-a"]["enabled"] and after["yearly-b"]["enabled"]

    # yearly-b leaves the config: only it is disabled; Django's rows stay as they were.
    _config(config, dsn, _schedule("yearly-a"))
    log = _up_once(config, tmp_path / "second.log")
    assert "schedules disabled (no longer in the config): yearly-b" in log
    after = _rows(conn)
    assert {name: after[name] for name in django_rows} == django_rows
    assert after["yearly-a"]["enabled"] and not after["yearly-b"]["enabled"]


def test_a_config_schedule_named_like_a_django_row_leaves_that_row_unchanged(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    _add_like_django(conn, "nightly")
    before = _rows(conn)["nightly"]
    config = _config(tmp_path / "up.toml", dsn, _schedule("nightly", args="[9]"))
    log = _up_once(config, tmp_path / "up.log")
    assert _rows(conn)["nightly"] == before
    warning = next(line for line in log.splitlines() if "nightly" in line)
    assert "WARNING" in warning and "not created by a reproq config" in warning
