"""Executing: outcomes become statuses, errors_json entries and retries, as in the contract."""

from __future__ import annotations

import datetime as dt
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

from reproq.db import Conn
from reproq.executors.base import CancelCheck, Outcome, TaskCall
from reproq.spec import build_spec, canonical_json
from tests.integration.sql_rows import insert_row
from tests.integration.worker_harness import (
    enqueue,
    errors,
    make_due,
    row,
    running,
    wait_all,
    wait_retry,
    wait_status,
    wait_until,
)

ENTRY_KEYS = {"kind", "message", "exception_class", "traceback", "attempt", "at", "worker_id"}


def test_a_success_stores_the_return_value_and_ends_the_lease(dsn: str, conn: Conn) -> None:
    rid = enqueue(conn, "add", 2, 3)
    with running(dsn) as worker:
        done = wait_status(conn, rid, "SUCCESSFUL")
    assert done["return_json"] == 5
    assert done["finished_at"] is not None and done["leased_until"] is None
    assert done["attempts"] == 1 and done["errors_json"] == []
    assert done["leased_by"] is None and done["worker_ids"] == [worker.worker_id]
    assert worker.stats().succeeded == 1


def test_the_task_sees_its_own_attempt_through_the_context(dsn: str, conn: Conn) -> None:
    rid = enqueue(conn, "whoami")
    with running(dsn) as worker:
        done = wait_status(conn, rid, "SUCCESSFUL")
    assert done["return_json"] == {"result_id": rid, "attempt": 1, "worker_id": worker.worker_id}


def test_a_task_declared_with_takes_context_gets_it_first(dsn: str, conn: Conn) -> None:
    from reproq.producer.enqueue import NewTask, insert_task

    spec = build_spec("tests.tasks.sample.with_context", [7], takes_context=True)
    rid = insert_task(conn, NewTask.from_spec(spec))
    with running(dsn):
        done = wait_status(conn, rid, "SUCCESSFUL")
    assert done["return_json"] == {"result_id": rid, "x": 7}


def test_an_app_error_is_retried_after_the_backoff_then_fails_for_good(
    dsn: str, conn: Conn
) -> None:
    rid = enqueue(conn, "fail", "boom", max_attempts=3)
    with running(dsn) as worker:
        first = wait_retry(conn, rid, 1)
        assert first["leased_by"] is None
        delay = (first["run_after"] - first["updated_at"]).total_seconds()
        assert 29 <= delay <= 31
        make_due(conn, rid)
        second = wait_retry(conn, rid, 2)
        delay = (second["run_after"] - second["updated_at"]).total_seconds()
        assert 59 <= delay <= 61
        make_due(conn, rid)
        final = wait_status(conn, rid, "FAILED")
    assert final["attempts"] == 3
    assert final["failed_at"] is not None and final["finished_at"] is not None
    assert final["last_error"] == "boom"
    entries = errors(conn, rid)
    assert [e["attempt"] for e in entries] == [1, 2, 3]
    for entry in entries:
        assert set(entry) == ENTRY_KEYS
        assert entry["kind"] == "app_error" and entry["exception_class"] == "ValueError"
        assert "ValueError: boom" in entry["traceback"]
        assert entry["worker_id"] == worker.worker_id
        dt.datetime.fromisoformat(entry["at"])


def test_a_retried_task_can_succeed_on_a_later_attempt(dsn: str, conn: Conn) -> None:
    rid = enqueue(conn, "fail_until", 2)
    with running(dsn):
        wait_retry(conn, rid, 1)
        make_due(conn, rid)
        done = wait_status(conn, rid, "SUCCESSFUL")
    assert done["return_json"] == 2 and len(done["errors_json"]) == 1


def test_a_task_past_its_timeout_fails_as_an_infra_error_and_its_slot_is_replaced(
    dsn: str, conn: Conn
) -> None:
    stuck = enqueue(conn, "sleep", 4.0, timeout_seconds=1, max_attempts=1)
    with running(dsn, concurrency=1) as worker:
        failed = wait_status(conn, stuck, "FAILED", timeout=10)
        after = enqueue(conn, "add", 1, 1)  # the only slot is free again at once
        wait_status(conn, after, "SUCCESSFUL", timeout=3)
        assert worker.stats().timed_out == 1
    (entry,) = errors(conn, stuck)
    assert entry["kind"] == "infra_error" and "timeout" in entry["message"]
    assert failed["return_json"] is None  # the late result of the stuck thread is discarded


def test_a_pool_timeout_caps_a_longer_task_timeout(dsn: str, conn: Conn) -> None:
    rid = enqueue(conn, "sleep", 4.0, timeout_seconds=900, max_attempts=1)
    with running(dsn, max_timeout_seconds=1.0):
        wait_status(conn, rid, "FAILED", timeout=10)
    (entry,) = errors(conn, rid)
    assert entry["kind"] == "infra_error"
    assert "timeout after 1" in entry["message"]


def test_timeouts_count_as_attempts_and_retry_until_max_attempts(dsn: str, conn: Conn) -> None:
    rid = enqueue(conn, "sleep", 3.0, timeout_seconds=1, max_attempts=2)
    with running(dsn):
        wait_retry(conn, rid, 1, timeout=10)
        make_due(conn, rid)
        final = wait_status(conn, rid, "FAILED", timeout=10)
    assert final["attempts"] == 2
    assert [e["kind"] for e in errors(conn, rid)] == ["infra_error", "infra_error"]


def test_an_expired_task_is_not_run(dsn: str, conn: Conn, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    rid = enqueue(conn, "marked_sleep", str(marker), 0, expires_in=dt.timedelta(seconds=-1))
    with running(dsn):
        done = wait_status(conn, rid, "FAILED")
    assert not marker.exists()
    (entry,) = errors(conn, rid)
    assert entry["kind"] == "expired"
    assert done["attempts"] == 1


def test_a_task_path_outside_the_allow_list_fails_at_once_without_retry(
    dsn: str, conn: Conn
) -> None:
    rid = enqueue(conn, "os.getcwd", max_attempts=5)
    with running(dsn):
        done = wait_status(conn, rid, "FAILED")
    (entry,) = errors(conn, rid)
    assert entry["kind"] == "security_violation" and "os.getcwd" in entry["message"]
    assert done["attempts"] == 1


def test_the_allow_list_checks_the_spec_path_not_the_task_path_column(dsn: str, conn: Conn) -> None:
    rid = enqueue(conn, "add", 1, 1)
    forged = build_spec("os.getcwd", [])
    conn.execute(
        "UPDATE task_runs SET spec_json = %s::jsonb WHERE result_id = %s",
        (canonical_json(forged), rid),
    )
    assert row(conn, rid)["task_path"] == "tests.tasks.sample.add"
    with running(dsn):
        wait_status(conn, rid, "FAILED")
    assert errors(conn, rid)[0]["kind"] == "security_violation"


def test_an_invalid_spec_fails_at_once_without_retry(dsn: str, conn: Conn) -> None:
    rid = enqueue(conn, "add", 1, 1, max_attempts=5)
    conn.execute(
        'UPDATE task_runs SET spec_json = \'{"task_path": "no_dots"}\'::jsonb WHERE result_id = %s',
        (rid,),
    )
    with running(dsn):
        done = wait_status(conn, rid, "FAILED")
    assert errors(conn, rid)[0]["kind"] == "invalid_spec"
    assert done["attempts"] == 1


def test_an_oversized_payload_is_an_infra_error_counted_as_an_attempt(dsn: str, conn: Conn) -> None:
    rid = enqueue(conn, "echo", "x" * 3000, max_attempts=1)
    with running(dsn, max_payload_bytes=1000):
        wait_status(conn, rid, "FAILED")
    (entry,) = errors(conn, rid)
    assert entry["kind"] == "infra_error" and "max_payload_bytes" in entry["message"]


def test_return_values_that_cannot_be_stored_fail_clearly_without_hurting_the_batch(
    dsn: str, conn: Conn
) -> None:
    bad = [
        enqueue(conn, "unserialisable", max_attempts=1),
        enqueue(conn, "nul_result", max_attempts=1),
        enqueue(conn, "big_result", 5000, max_attempts=1),
    ]
    good = [enqueue(conn, "add", i, i) for i in range(5)]
    with running(dsn, max_output_bytes=2000):
        wait_all(conn, good, "SUCCESSFUL")
        wait_all(conn, bad, "FAILED")
    messages = [errors(conn, rid)[0]["message"] for rid in bad]
    assert "set" in messages[0] and "JSON" in messages[0]
    assert "NUL" in messages[1]
    assert "max_output_bytes" in messages[2]


class _Talkative:
    """An executor whose attempts print: stands in for one that captures output."""

    name = "talkative"

    def start(self) -> None:
        pass

    def run(self, call: TaskCall, cancel: CancelCheck) -> Outcome:
        return Outcome.success("ok", stdout=f"hello from {call.result_id}\n", stderr="warn\n")

    def shutdown(self, *, wait: bool) -> None:
        pass


def test_captured_output_goes_to_a_private_log_file_named_in_logs_uri(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    rid = enqueue(conn, "noop")
    logs = tmp_path / "logs"
    with running(dsn, executor=_Talkative(), logs_dir=str(logs)):
        done = wait_status(conn, rid, "SUCCESSFUL")
    path = Path(done["logs_uri"])
    assert path == logs / f"task-{rid}-attempt-1.log"
    assert f"hello from {rid}" in path.read_text() and "warn" in path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_what_a_thread_task_prints_is_capped_in_its_log_not_in_the_worker_output(
    dsn: str, conn: Conn, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    rid = enqueue(conn, "tests.tasks.executors.print_text", 50 * 1024 * 1024)
    logs = tmp_path / "logs"
    with running(dsn, logs_dir=str(logs)):
        done = wait_status(conn, rid, "SUCCESSFUL", timeout=60)
    text = Path(done["logs_uri"]).read_text()
    assert text.startswith("STDOUT:\nxxxxxxxx")
    assert "[TRUNCATED due to size limit]" in text
    assert len(text) < 1024 * 1024 + 1000
    out, err = capfd.readouterr()
    assert len(out) + len(err) < 100_000


def test_a_row_inserted_the_way_reproq_django_does_is_executed(dsn: str, conn: Conn) -> None:
    args: list[Any] = [123, "12.34"]
    kwargs = {"welcome": True, "token": str(uuid.uuid4())}
    rid = insert_row(conn, "tests.tasks.sample.echo", args, kwargs)
    with running(dsn):
        done = wait_status(conn, rid, "SUCCESSFUL")
    assert done["return_json"] == {"args": args, "kwargs": kwargs}


def test_a_django_row_runs_through_the_subprocess_executor_and_a_contract_module(
    dsn: str, conn: Conn
) -> None:
    from reproq.executors.subprocess import SubprocessExecutor

    ok = insert_row(conn, "tests.tasks.sample.add", [20, 22], {})
    bad = insert_row(conn, "tests.tasks.sample.fail", ["from a child"], {})
    executor = SubprocessExecutor(module="tests.tasks.contract_executor")
    with running(dsn, executor=executor):
        assert wait_status(conn, ok, "SUCCESSFUL")["return_json"] == 42
        wait_retry(conn, bad, 1)
    entry = errors(conn, bad)[0]
    assert entry["kind"] == "app_error" and entry["exception_class"] == "ValueError"
    assert entry["message"] == "from a child"


def test_the_worker_registers_itself_and_touches_last_seen_on_heartbeats(
    dsn: str, conn: Conn
) -> None:
    with running(dsn, concurrency=3, queues=("default", "high")) as worker:
        reg = conn.execute(
            "SELECT * FROM reproq_workers WHERE worker_id = %s", (worker.worker_id,)
        ).fetchone()
        assert reg is not None
        assert reg["concurrency"] == 3 and reg["queues"] == ["default", "high"]
        assert reg["hostname"] and reg["version"]
        seen = reg["last_seen_at"]

        def moved() -> bool:
            found = conn.execute(
                "SELECT last_seen_at > %s AS moved FROM reproq_workers WHERE worker_id = %s",
                (seen, worker.worker_id),
            ).fetchone()
            return bool(found and found["moved"])

        wait_until(moved, 5)
    started = reg["started_at"]
    with running(dsn, worker_id=worker.worker_id):
        again = conn.execute(
            "SELECT started_at FROM reproq_workers WHERE worker_id = %s", (worker.worker_id,)
        ).fetchone()
    assert again is not None and again["started_at"] == started  # re-registering keeps it


def test_tasks_that_enqueue_more_work_reach_the_same_database(dsn: str, conn: Conn) -> None:
    from reproq.producer.client import configure

    configure(dsn)
    rid = enqueue(conn, "reproq.demo.fan_out", 3)
    with running(dsn):
        done = wait_status(conn, rid, "SUCCESSFUL")
        wait_all(conn, done["return_json"], "SUCCESSFUL")
    assert [row(conn, i)["return_json"] for i in done["return_json"]] == [0, 2, 4]
