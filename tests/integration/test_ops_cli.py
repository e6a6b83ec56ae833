"""The operations commands end to end: output, effects, exit codes and error lines."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from reproq.cli import main
from reproq.db import Conn
from reproq.producer.enqueue import insert_task
from reproq.producer.signature import Signature

BAD_DSN = "postgresql://nobody@127.0.0.1:1/nowhere?connect_timeout=3"


def _enqueue(conn: Conn, path: str = "app.tasks.work", *args: Any, **options: Any) -> int:
    return insert_task(conn, Signature(task_path=path, args=args, **options).to_new_task())


def _fail(conn: Conn, result_id: int) -> None:
    conn.execute(
        "UPDATE task_runs SET status = 'FAILED', attempts = 3, failed_at = now(), "
        "finished_at = now(), last_error = 'ValueError: bad input', errors_json = "
        '\'[{"kind": "app_error", "message": "bad input", "attempt": 3, '
        '"exception_class": "ValueError", "traceback": "Traceback (most recent call '
        "last):\\n  boom\"}]'::jsonb WHERE result_id = %s",
        (result_id,),
    )


def _status(conn: Conn, result_id: int) -> str:
    row = conn.execute("SELECT status FROM task_runs WHERE result_id = %s", (result_id,)).fetchone()
    assert row is not None
    return str(row["status"])


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- happy paths


def test_status_prints_a_table_per_queue_with_totals_and_workers(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    _enqueue(conn, "app.tasks.a", queue="emails")
    _fail(conn, _enqueue(conn, "app.tasks.b"))
    conn.execute(
        "INSERT INTO reproq_workers (worker_id, hostname, concurrency, queues, started_at, "
        "last_seen_at, version) VALUES ('w1', 'box', 4, '[\"emails\"]', now(), now(), '0.1')"
    )
    main(["pause", "emails", "--reason", "smtp down", "--dsn", dsn])
    capsys.readouterr()

    code, out, err = run(capsys, "status", "--dsn", dsn)

    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["QUEUE", "READY", "SCHEDULED", "WAITING", "RUNNING"]
    emails = next(line for line in lines if line.startswith("emails"))
    assert emails.split()[1] == "1" and "paused: smtp down" in emails
    default = next(line for line in lines if line.startswith("default"))
    assert default.split()[5] == "1"  # FAILED
    assert any(line.startswith("TOTAL") for line in lines)
    assert "workers: 1 alive, 0 stale" in out and "w1" in out


def test_status_json_is_machine_readable(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    _enqueue(conn)
    code, out, _ = run(capsys, "status", "--json", "--dsn", dsn)
    data = json.loads(out)
    assert code == 0
    assert data["totals"]["READY"] == 1 and data["queues"][0]["queue"] == "default"
    assert data["workers_alive"] == 0 and data["count_cap"] == 10000


def test_replay_cancel_and_retry_commands_change_the_rows(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = _enqueue(conn, "app.tasks.replayme", 1)
    _fail(conn, failed)

    code, out, _ = run(capsys, "replay", "--id", str(failed), "--dsn", dsn)
    assert code == 0
    new_id = int(out.split()[-1])
    assert out.strip() == f"replayed task {failed} as task {new_id}"

    code, out, _ = run(capsys, "cancel", "--id", str(new_id), "--dsn", dsn)
    assert code == 0 and out.strip() == f"task {new_id}: cancelled"
    assert _status(conn, new_id) == "CANCELLED"

    code, out, _ = run(capsys, "triage", "retry", "--id", str(failed), "--dsn", dsn)
    assert code == 0 and f"task {failed}: retried" in out
    assert _status(conn, failed) == "READY"


def test_replay_by_spec_hash_and_as_json(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = _enqueue(conn, "app.tasks.h")
    _fail(conn, rid)
    row = conn.execute("SELECT spec_hash FROM task_runs WHERE result_id = %s", (rid,)).fetchone()
    assert row is not None
    code, out, _ = run(capsys, "replay", "--spec-hash", row["spec_hash"], "--json", "--dsn", dsn)
    assert code == 0 and json.loads(out)["source_id"] == rid


def test_cancel_of_a_running_task_reports_the_request(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = _enqueue(conn)
    conn.execute(
        "UPDATE task_runs SET status = 'RUNNING', leased_by = 'w1' WHERE result_id = %s", (rid,)
    )
    code, out, _ = run(capsys, "cancel", "--id", str(rid), "--dsn", dsn)
    assert code == 0 and "cancel requested" in out


def test_triage_list_and_inspect_show_the_failure(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = _enqueue(conn, "app.tasks.broken", 5, queue="q1")
    _fail(conn, rid)

    code, out, _ = run(capsys, "triage", "list", "--dsn", dsn)
    assert code == 0
    header, line = out.splitlines()
    assert header.split()[:3] == ["ID", "QUEUE", "TASK"]
    assert line.split()[:4] == [str(rid), "q1", "app.tasks.broken", "3/3"]
    assert "ValueError: bad input" in line

    code, out, _ = run(capsys, "triage", "list", "--queue", "other", "--dsn", dsn)
    assert out.strip() == "no FAILED tasks in queue 'other'"

    code, out, _ = run(capsys, "triage", "inspect", "--id", str(rid), "--dsn", dsn)
    assert code == 0
    assert f"task {rid}  app.tasks.broken  [FAILED]" in out
    assert "attempt 3: app_error ValueError: bad input" in out
    assert "Traceback (most recent call last):" in out and "args           [5]" in out

    code, out, _ = run(capsys, "triage", "inspect", "--id", str(rid), "--json", "--dsn", dsn)
    detail = json.loads(out)
    assert detail["errors"][0]["exception_class"] == "ValueError"
    assert detail["spec"]["args"] == [5]


def test_triage_retry_all_reports_a_summary(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(3):
        _fail(conn, _enqueue(conn, "app.tasks.x", i, queue="q1"))
    _fail(conn, _enqueue(conn, "app.tasks.x", 9, queue="q2"))

    code, out, _ = run(capsys, "triage", "retry", "--all", "--queue", "q1", "--dsn", dsn)
    assert code == 0 and out.strip() == "retried 3"
    code, out, _ = run(capsys, "triage", "retry", "--all", "--dsn", dsn)
    assert out.strip() == "retried 1"


def test_limit_set_ls_and_rm(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "limit",
        "set",
        "--key",
        "queue:emails",
        "--rate",
        "2.5",
        "--burst",
        "5",
        "--dsn",
        dsn,
    )
    assert code == 0 and out.strip() == "rate limit queue:emails: 2.5/s, burst 5"

    code, out, _ = run(capsys, "limit", "ls", "--dsn", dsn)
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [r[:2] for r in rows] == [["global", "no"], ["queue:emails", "2.5/s"]]

    code, out, _ = run(capsys, "limit", "ls", "--json", "--dsn", dsn)
    assert [lim["key"] for lim in json.loads(out)] == ["global", "queue:emails"]

    code, out, _ = run(capsys, "limit", "rm", "--key", "queue:emails", "--dsn", dsn)
    assert code == 0 and out.strip() == "removed rate limit queue:emails"
    code, out, _ = run(capsys, "limit", "rm", "--key", "global", "--dsn", dsn)
    assert code == 0 and "reset" in out


def test_prune_commands_delete_and_dry_run(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    expired = _enqueue(conn, "app.tasks.e", expires_in=-60.0)
    old = _enqueue(conn, "app.tasks.o")
    conn.execute(
        "UPDATE task_runs SET status = 'SUCCESSFUL', finished_at = now() - interval '8 days' "
        "WHERE result_id = %s",
        (old,),
    )
    conn.execute(
        "INSERT INTO reproq_workers (worker_id, queues, started_at, last_seen_at) "
        "VALUES ('ghost', '[]', now(), now() - interval '1 hour')"
    )

    assert run(capsys, "prune", "expired", "--dry-run", "--dsn", dsn)[1].strip() == (
        "would delete 1 expired task runs (dry run)"
    )
    assert _status(conn, expired) == "READY"
    assert run(capsys, "prune", "expired", "--dsn", dsn)[1].strip() == "deleted 1 expired task runs"

    code, out, _ = run(
        capsys,
        "prune",
        "finished",
        "--older-than",
        "7d",
        "--status",
        "failed,cancelled",
        "--dsn",
        dsn,
    )
    assert out.strip() == "deleted 0 finished task runs"
    code, out, _ = run(capsys, "prune", "finished", "--older-than", "7d", "--json", "--dsn", dsn)
    assert json.loads(out) == {"deleted": 1, "dry_run": False, "matched": 1}

    code, out, _ = run(capsys, "prune", "workers", "--older-than", "10m", "--dsn", dsn)
    assert code == 0 and out.strip() == "deleted 1 stale workers"
    left = conn.execute("SELECT count(*) AS n FROM task_runs").fetchone()
    assert left == {"n": 0}


def test_pause_and_resume_commands(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "pause", "emails", "--reason", "maintenance", "--dsn", dsn)
    assert code == 0 and out.strip() == "queue emails paused (maintenance)"
    code, out, _ = run(capsys, "resume", "emails", "--dsn", dsn)
    assert code == 0 and out.strip() == "queue emails resumed"
    row = conn.execute("SELECT paused FROM reproq_queue_controls").fetchone()
    assert row == {"paused": False}


def test_dsn_defaults_to_database_url(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", dsn)
    monkeypatch.delenv("REPROQ_CONFIG", raising=False)
    _enqueue(conn)
    code, out, _ = run(capsys, "status", "--json")
    assert code == 0 and json.loads(out)["totals"]["READY"] == 1


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cancel", "--id", "424242"], "no task run with result_id 424242"),
        (["replay", "--id", "424242"], "no task run with result_id 424242"),
        (["triage", "inspect", "--id", "424242"], "no task run with result_id 424242"),
        (["triage", "retry", "--id", "424242"], "no task run with result_id 424242"),
        (["limit", "rm", "--key", "queue:nope"], "no rate limit with key 'queue:nope'"),
    ],
)
def test_unknown_ids_are_one_line_runtime_errors(
    dsn: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv, "--dsn", dsn)
    assert code == 1 and out == ""
    assert err == f"reproq: error: {message}\n"


def test_actions_not_allowed_in_the_rows_state_exit_1(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = _enqueue(conn)
    code, _, err = run(capsys, "triage", "retry", "--id", str(rid), "--dsn", dsn)
    assert code == 1 and f"task {rid} is READY: only FAILED tasks can be retried" in err
    code, _, err = run(capsys, "replay", "--id", str(rid), "--dsn", dsn)
    assert code == 1 and f"already queued or running as result_id {rid}" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["triage", "list", "--limit", "0"], "--limit must be a positive integer, got 0"),
        (["triage", "retry", "--all", "--limit", "-3"], "--limit must be a positive integer"),
        (["prune", "expired", "--limit", "0"], "--limit must be a positive integer, got 0"),
        (["prune", "finished", "--older-than", "7x"], "--older-than: invalid duration '7x'"),
        (["prune", "finished", "--older-than", "1d", "--status", "running"], "not RUNNING"),
        (["prune", "workers", "--older-than", "0"], "--older-than must be greater than zero"),
        (["cancel", "--id", "0"], "--id must be a positive integer, got 0"),
        (["limit", "set", "--key", "k", "--rate", "1", "--burst", "1"], "rate limit key 'k'"),
        (["limit", "set", "--key", "global", "--rate", "-1", "--burst", "1"], "rate must be"),
        (["limit", "set", "--key", "global", "--rate", "1", "--burst", "0"], "burst must be"),
        (["replay", "--spec-hash", "nothex"], "not 64 hexadecimal characters"),
        (["triage", "retry", "--id", "3", "--queue", "q"], "go with --all"),
    ],
)
def test_bad_values_are_one_line_usage_errors(
    dsn: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv, "--dsn", dsn)
    assert code == 2 and out == ""
    assert err.startswith("reproq: error: ") and message in err
    assert err.count("\n") == 1


def test_a_command_group_without_a_command_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for group in ("triage", "limit", "prune"):
        code, out, err = run(capsys, group)
        assert code == 2 and out == ""
        assert (
            err == f"reproq: error: reproq {group} needs a command (see `reproq {group} --help`)\n"
        )


def test_unknown_flags_and_missing_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["status", "--bogus"], ["cancel"], ["replay", "--id", "1", "--spec-hash", "a"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err


def test_a_database_that_is_down_is_a_one_line_runtime_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "status", "--dsn", BAD_DSN)
    assert code == 1 and out == ""
    assert err.startswith("reproq: error: cannot connect to postgresql://nobody@127.0.0.1:1/")
    assert err.count("\n") == 1


def test_a_malformed_dsn_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "triage", "list", "--dsn", "this is not a dsn")
    assert code == 1 and err.startswith("reproq: error: cannot connect to this is not a dsn")
    assert err.count("\n") == 1


def test_a_database_without_the_schema_says_to_migrate(
    empty_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "status", "--dsn", empty_dsn)
    assert code == 1 and "reproq migrate" in err and err.count("\n") == 1


def test_password_in_a_bad_dsn_is_not_printed(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "status", "--dsn", "postgresql://bob:s3cret@127.0.0.1:1/db?connect_timeout=3"
    )
    assert code == 1 and "s3cret" not in err and "bob:***@" in err


def test_python_m_reproq_status_with_a_bad_dsn_exits_1_without_a_traceback() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REPROQ_CONFIG")}
    proc = subprocess.run(
        [sys.executable, "-m", "reproq", "status", "--dsn", BAD_DSN],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("reproq: error: cannot connect to")
    assert proc.stderr.count("\n") == 1


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    from reproq.errors import DatabaseError

    with pytest.raises(DatabaseError):
        main(["--debug", "status", "--dsn", BAD_DSN])


def test_status_shows_the_oldest_ready_age(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = _enqueue(conn)
    conn.execute(
        "UPDATE task_runs SET enqueued_at = now() - %s WHERE result_id = %s",
        (dt.timedelta(minutes=90), rid),
    )
    _, out, _ = run(capsys, "status", "--dsn", dsn)
    line = next(line for line in out.splitlines() if line.startswith("default"))
    assert "1h30m" in line
