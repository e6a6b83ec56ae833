"""Rows written as the Go worker writes them, column by column.

A Django project reads ``task_runs`` through reproq-django, which was written against the
Go Reproq Worker: the expected values here are read from that worker's
``internal/queue/queue.go`` at commit 544aae0 (``Claim``, ``CompleteSuccess``,
``CompleteFailure``, ``Reclaim``). Each test runs reproq's own statements, then checks every
column the Go worker writes at that step, and that every other column is as it was.

Deliberate differences, not checked here: reproq's ``errors_json`` entries carry more
keys than the Go worker's for infrastructure errors (``attempt``, ``worker_id``, ...), and
a reclaimed row's message names the worker whose lease expired.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from reproq.db import Conn
from reproq.engine.claim import Claimer
from reproq.engine.reclaim import reclaim_expired
from tests.integration.worker_harness import (
    enqueue,
    make_due,
    row,
    running,
    wait_retry,
    wait_status,
)


class _Set:
    """Any non-NULL value (a timestamp the statement sets to now())."""

    def __repr__(self) -> str:
        return "<set>"


SET = _Set()

# The keys of an app_error entry as CompleteFailure's caller (runner.go) builds it.
_GO_APP_ERROR_KEYS = {
    "kind",
    "exception_class",
    "traceback",
    "message",
    "attempt",
    "at",
    "worker_id",
}


def _assert_written(before: dict[str, Any], after: dict[str, Any], writes: dict[str, Any]) -> None:
    """``after`` has ``writes`` (SET = not NULL) and every other column of ``before``."""
    wrong = []
    for column, old in before.items():
        value = after[column]
        if column in writes:
            expected = writes[column]
            ok = value is not None if expected is SET else value == expected
        else:
            expected, ok = old, value == old
        if not ok:
            wrong.append(f"{column}: {value!r}, expected {expected!r}")
    assert not wrong, "columns written differently from the Go worker:\n" + "\n".join(wrong)


def test_a_successful_attempt_is_written_like_complete_success(dsn: str, conn: Conn) -> None:
    rid = enqueue(conn, "add", 2, 3)
    before = row(conn, rid)
    with running(dsn) as worker:
        after = wait_status(conn, rid, "SUCCESSFUL")
    _assert_written(
        before,
        after,
        {
            # Claim
            "status": "SUCCESSFUL",
            "attempts": 1,
            "started_at": SET,
            "last_attempted_at": SET,
            "worker_ids": [worker.worker_id],
            # CompleteSuccess: lease columns and errors cleared, logs_uri kept (no logs)
            "finished_at": SET,
            "return_json": 5,
            "last_error": None,
            "failed_at": None,
            "leased_until": None,
            "leased_by": None,
            "updated_at": SET,
        },
    )


def test_a_retried_attempt_then_a_success_are_written_like_complete_failure_and_success(
    dsn: str, conn: Conn
) -> None:
    rid = enqueue(conn, "fail_until", 2, max_attempts=3)
    before = row(conn, rid)
    with running(dsn) as worker:
        retried = wait_retry(conn, rid, 1)
        _assert_written(
            before,
            retried,
            {
                "status": "READY",
                "attempts": 1,
                "started_at": SET,
                "last_attempted_at": SET,
                "worker_ids": [worker.worker_id],
                # CompleteFailure with shouldRetry: READY, due after the backoff
                "finished_at": None,
                "errors_json": retried["errors_json"],
                "run_after": SET,
                "last_error": None,
                "failed_at": None,
                "leased_until": None,
                "leased_by": None,
                "updated_at": SET,
            },
        )
        assert retried["run_after"] - retried["updated_at"] >= dt.timedelta(seconds=29)
        (entry,) = retried["errors_json"]
        assert set(entry) == _GO_APP_ERROR_KEYS and entry["kind"] == "app_error"
        make_due(conn, rid)
        due = row(conn, rid)
        done = wait_status(conn, rid, "SUCCESSFUL")
    _assert_written(
        due,
        done,
        {
            "status": "SUCCESSFUL",
            "attempts": 2,
            "last_attempted_at": SET,
            "worker_ids": [worker.worker_id, worker.worker_id],
            "finished_at": SET,
            "return_json": 2,
            # the first attempt's error is history in errors_json, not the row's error
            "last_error": None,
            "failed_at": None,
            "leased_until": None,
            "leased_by": None,
            "updated_at": SET,
        },
    )


def test_a_final_failure_is_written_like_complete_failure_without_retry(
    dsn: str, conn: Conn
) -> None:
    rid = enqueue(conn, "fail", "broken for good", max_attempts=2)
    with running(dsn) as worker:
        wait_retry(conn, rid, 1)
        make_due(conn, rid)
        due = row(conn, rid)
        assert due["run_after"] is not None
        failed = wait_status(conn, rid, "FAILED")
    _assert_written(
        due,
        failed,
        {
            "status": "FAILED",
            "attempts": 2,
            "last_attempted_at": SET,
            "worker_ids": [worker.worker_id, worker.worker_id],
            "finished_at": SET,
            "errors_json": failed["errors_json"],
            "run_after": None,
            "last_error": "broken for good",
            "failed_at": SET,
            "leased_until": None,
            "leased_by": None,
            "updated_at": SET,
        },
    )
    assert [e["attempt"] for e in failed["errors_json"]] == [1, 2]
    assert all(set(e) == _GO_APP_ERROR_KEYS for e in failed["errors_json"])


def _claim_and_expire(conn: Conn, rid: int) -> dict[str, Any]:
    Claimer(worker_id="dead", queues=["default"], lease_seconds=60, priority_aging_factor=0).claim(
        conn, 1
    )
    conn.execute(
        "UPDATE task_runs SET leased_until = now() - interval '1 second' WHERE result_id = %s",
        (rid,),
    )
    return row(conn, rid)


def test_a_reclaimed_lease_with_attempts_left_is_written_like_reclaim(conn: Conn) -> None:
    rid = enqueue(conn, "add", 1, 1, max_attempts=3)
    expired = _claim_and_expire(conn, rid)
    assert reclaim_expired(conn, worker_id="reaper").requeued == (rid,)
    after = row(conn, rid)
    _assert_written(
        expired,
        after,
        {
            "status": "READY",
            "finished_at": None,
            "errors_json": after["errors_json"],
            "last_error": None,
            "failed_at": None,
            "leased_until": None,
            "leased_by": None,
            "updated_at": SET,
        },
    )
    (entry,) = after["errors_json"]
    assert entry["kind"] == "lease_expiry" and {"kind", "message", "at"} <= set(entry)


def test_a_reclaimed_lease_on_the_last_attempt_is_written_like_reclaim(conn: Conn) -> None:
    rid = enqueue(conn, "add", 1, 1, max_attempts=1)
    expired = _claim_and_expire(conn, rid)
    assert reclaim_expired(conn, worker_id="reaper").failed == (rid,)
    after = row(conn, rid)
    _assert_written(
        expired,
        after,
        {
            "status": "FAILED",
            "finished_at": SET,
            "errors_json": after["errors_json"],
            "last_error": after["last_error"],
            "failed_at": SET,
            "leased_until": None,
            "leased_by": None,
            "updated_at": SET,
        },
    )
    assert after["last_error"] and "expired" in after["last_error"]
