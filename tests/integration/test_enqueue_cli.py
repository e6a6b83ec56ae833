"""``reproq enqueue`` and ``reproq migrate`` from the command line."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from reproq.cli import main
from reproq.db import Conn
from reproq.pg.migrations import latest_version
from reproq.spec import spec_hash


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _row(conn: Conn, result_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM task_runs WHERE result_id = %s", (result_id,)).fetchone()
    assert row is not None
    return row


def test_enqueue_prints_the_result_id_of_the_new_row(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "enqueue",
        "myapp.tasks.send_email",
        "--args",
        "[123]",
        "--kwargs",
        '{"welcome": true}',
        "--queue",
        "emails",
        "--priority",
        "5",
        "--lock-key",
        "user:123",
        "--concurrency-key",
        "smtp",
        "--concurrency-limit",
        "2",
        "--max-attempts",
        "4",
        "--timeout",
        "2m",
        "--expires-in",
        "1h",
        "--dsn",
        dsn,
    )
    assert code == 0 and err == ""
    row = _row(conn, int(out.strip()))
    spec = row["spec_json"]
    assert (spec["args"], spec["kwargs"]) == ([123], {"welcome": True})
    assert row["spec_hash"] == spec_hash(spec)
    assert (row["queue_name"], row["priority"], row["lock_key"]) == ("emails", 5, "user:123")
    assert (row["concurrency_key"], row["concurrency_limit"]) == ("smtp", 2)
    assert (row["max_attempts"], row["timeout_seconds"]) == (4, 120)
    assert row["status"] == "READY" and row["run_after"] is None
    now = dt.datetime.now(dt.UTC)
    assert now + dt.timedelta(minutes=55) < row["expires_at"] < now + dt.timedelta(minutes=65)


def test_enqueue_run_after_accepts_relative_and_iso_times(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(capsys, "enqueue", "app.tasks.later", "--run-after", "+30s", "--dsn", dsn)
    relative = _row(conn, int(out))["run_after"]
    now = dt.datetime.now(dt.UTC)
    assert now + dt.timedelta(seconds=20) < relative < now + dt.timedelta(seconds=40)

    _, out, _ = run(
        capsys,
        "enqueue",
        "app.tasks.later",
        "--run-after",
        "2030-01-31T09:00:00+01:00",
        "--dsn",
        dsn,
    )
    assert _row(conn, int(out))["run_after"] == dt.datetime(2030, 1, 31, 8, tzinfo=dt.UTC)


def test_enqueue_json_output_and_dedup(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "enqueue", "app.tasks.once", "--args", "[1]", "--json", "--dsn", dsn)
    first = json.loads(out)
    assert code == 0 and first["task_path"] == "app.tasks.once" and len(first["spec_hash"]) == 64

    code, out, _ = run(capsys, "enqueue", "app.tasks.once", "--args", "[1]", "--dsn", dsn)
    assert code == 0 and int(out) == first["result_id"]

    code, out, err = run(
        capsys, "enqueue", "app.tasks.once", "--args", "[1]", "--no-dedup", "--dsn", dsn
    )
    assert code == 1 and out == ""
    assert f"already queued or running as result_id {first['result_id']}" in err
    count = conn.execute("SELECT count(*) AS n FROM task_runs").fetchone()
    assert count == {"n": 1}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--args", "[1, 2"], "--args is not valid JSON: "),
        (["--args", '{"a": 1}'], "--args must be a JSON array, got object"),
        (["--kwargs", "[1]"], "--kwargs must be a JSON object, got array"),
        (["--kwargs", "nope"], "--kwargs is not valid JSON"),
        (["--max-attempts", "0"], "--max-attempts must be a positive integer, got 0"),
        (["--concurrency-limit", "2"], "--concurrency-limit needs --concurrency-key"),
        (["--concurrency-limit", "-1"], "--concurrency-limit must be >= 0"),
        (["--timeout", "0"], "--timeout must be greater than zero"),
        (["--timeout", "soon"], "--timeout: invalid duration 'soon'"),
        (["--expires-in=-1h"], "--expires-in: invalid duration"),
        (["--run-after", "tomorrow"], "invalid time 'tomorrow'"),
    ],
)
def test_enqueue_bad_input_is_a_one_line_usage_error(
    dsn: str,
    conn: Conn,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    code, out, err = run(capsys, "enqueue", "app.tasks.x", *extra, "--dsn", dsn)
    assert code == 2 and out == ""
    assert err.startswith("reproq: error: ") and message in err and err.count("\n") == 1
    count = conn.execute("SELECT count(*) AS n FROM task_runs").fetchone()
    assert count == {"n": 0}


def test_enqueue_rejects_a_task_path_that_is_not_dotted(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "enqueue", "send_email", "--dsn", dsn)
    assert code == 2 and "is not a dotted path" in err


def test_enqueue_to_a_database_that_is_down_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "enqueue", "app.tasks.x", "--dsn", "postgresql://x@127.0.0.1:1/db?connect_timeout=3"
    )
    assert code == 1 and err.startswith("reproq: error: cannot connect to")


def test_migrate_prints_each_applied_migration_then_up_to_date(
    empty_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "migrate", "--dsn", empty_dsn)
    lines = out.splitlines()
    assert code == 0 and len(lines) == latest_version()
    assert lines[0] == "applied 0001_baseline"
    assert all(line.startswith("applied ") for line in lines)

    code, out, _ = run(capsys, "migrate", "--dsn", empty_dsn)
    assert code == 0 and out.strip() == f"schema is up to date (version {latest_version()})"
