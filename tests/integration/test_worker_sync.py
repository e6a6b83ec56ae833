"""The worker's round trip: one statement records ended attempts and claims new rows."""

from __future__ import annotations

import json
from collections.abc import Callable

from reproq.db import Conn
from reproq.engine.claim import Claimer
from reproq.engine.completion import Completion, encode, flush
from reproq.engine.lease import WorkerRecord, give_back, renew
from reproq.models import TaskStatus
from reproq.queries import q
from tests.integration.worker_harness import enqueue, row

_AWKWARD = 'quote " backslash \\ newline \n tab \t unicode é ✓ \u2028 nul-free'


def _claimer(wid: str = "w1") -> Claimer:
    return Claimer(worker_id=wid, queues=["default"], lease_seconds=60, priority_aging_factor=0)


def test_one_statement_records_a_mixed_batch_and_claims_the_next_rows(conn: Conn) -> None:
    first = [enqueue(conn, "add", i, i) for i in range(3)]
    later = [enqueue(conn, "add", 10 + i, 1) for i in range(2)]
    claimer = _claimer()
    ok, retry, failed = claimer.claim(conn, 3).rows
    assert [ok.result_id, retry.result_id, failed.result_id] == first
    error_entry = json.dumps({"kind": "app_error", "message": _AWKWARD, "attempt": 1})
    batch = [
        Completion(
            result_id=ok.result_id,
            attempt=ok.attempt,
            status=TaskStatus.SUCCESSFUL,
            return_json=json.dumps({"text": _AWKWARD, "n": [1, 2.5, None, True]}),
            logs_uri="/var/log/reproq/" + _AWKWARD,
        ),
        Completion(
            result_id=retry.result_id,
            attempt=retry.attempt,
            status=TaskStatus.READY,
            error_json=error_entry,
            delay_seconds=30.0,
            last_error="ignored on a retry",
        ),
        Completion(
            result_id=failed.result_id,
            attempt=failed.attempt,
            status=TaskStatus.FAILED,
            error_json=error_entry,
            last_error=_AWKWARD,
        ),
    ]

    result = claimer.read(claimer.send(conn, 5, encode(batch)))

    assert result.finished == frozenset(first)
    assert sorted(r.result_id for r in result.rows) == later  # the retry is not due yet
    done = row(conn, ok.result_id)
    assert done["status"] == "SUCCESSFUL" and done["finished_at"] is not None
    assert done["return_json"] == {"text": _AWKWARD, "n": [1, 2.5, None, True]}
    assert done["logs_uri"] == "/var/log/reproq/" + _AWKWARD and done["leased_until"] is None
    again = row(conn, retry.result_id)
    assert again["status"] == "READY" and again["leased_by"] is None
    # As the Go worker writes a retry: the error is in errors_json, not in last_error.
    assert again["last_error"] is None and again["finished_at"] is None
    assert again["errors_json"] == [{"kind": "app_error", "message": _AWKWARD, "attempt": 1}]
    wait = (again["run_after"] - again["updated_at"]).total_seconds()
    assert 29.0 <= wait <= 31.0
    gone = row(conn, failed.result_id)
    assert gone["status"] == "FAILED" and gone["failed_at"] is not None
    assert gone["last_error"] == _AWKWARD and gone["leased_by"] is None


def test_a_stale_attempt_in_a_batch_is_left_alone_while_the_rest_is_recorded(conn: Conn) -> None:
    a, b = enqueue(conn, "add", 1, 1), enqueue(conn, "add", 2, 2)
    claimer = _claimer()
    held = {r.result_id: r.attempt for r in claimer.claim(conn, 2).rows}
    batch = [
        Completion(result_id=a, attempt=held[a], status=TaskStatus.SUCCESSFUL, return_json="1"),
        Completion(result_id=b, attempt=held[b] + 1, status=TaskStatus.SUCCESSFUL),
    ]
    assert claimer.read(claimer.send(conn, 0, encode(batch))).finished == frozenset({a})
    assert row(conn, a)["status"] == "SUCCESSFUL"
    assert row(conn, b)["status"] == "RUNNING" and row(conn, b)["return_json"] is None


def test_another_worker_cannot_record_an_attempt_it_does_not_hold(conn: Conn) -> None:
    rid = enqueue(conn, "add", 1, 1)
    (mine,) = _claimer("w1").claim(conn, 1).rows
    theirs = Completion(
        result_id=rid, attempt=mine.attempt, status=TaskStatus.SUCCESSFUL, return_json="2"
    )
    assert flush(conn, "w2", [theirs]) == set()
    assert flush(conn, "w1", [theirs]) == {rid}
    assert row(conn, rid)["return_json"] == 2


def test_recording_many_attempts_at_once_among_other_workers_running_rows(conn: Conn) -> None:
    ids = [enqueue(conn, "add", i, 0) for i in range(250)]
    others = _claimer("other").claim(conn, 150).rows
    mine = _claimer("w1").claim(conn, 100).rows
    assert len(others) == 150 and len(mine) == 100
    batch = [
        Completion(result_id=r.result_id, attempt=r.attempt, status=TaskStatus.SUCCESSFUL)
        for r in mine
    ]
    assert flush(conn, "w1", batch) == {r.result_id for r in mine}
    statuses = conn.execute(
        "SELECT status, count(*) AS n FROM task_runs WHERE result_id = ANY(%s) GROUP BY status",
        (ids,),
    ).fetchall()
    assert {s["status"]: s["n"] for s in statuses} == {"SUCCESSFUL": 100, "RUNNING": 150}


def _index_reads(conn: Conn, index: str) -> int:
    """Entries read from ``index`` so far, as the statistics views count them."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    found = conn.execute(
        "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = %s", (index,)
    ).fetchone()
    assert found is not None
    return int(found["idx_tup_read"])


def test_batch_statements_read_their_own_rows_not_the_fleets(conn: Conn) -> None:
    """Recording, renewing and giving back cost the same however many rows other workers
    are running: the rows are found by primary key, never by walking every RUNNING row."""
    for i in range(400):
        enqueue(conn, "add", i, 0)
    conn.execute("ANALYZE task_runs")  # statistics from before any row ran, as in production
    assert len(_claimer("other").claim(conn, 350).rows) == 350
    mine = _claimer("w1").claim(conn, 50).rows
    assert len(mine) == 50
    conn.execute(q("worker_session_setup"), {"statement_timeout": "60s"})  # generic plans
    record = WorkerRecord(
        worker_id="w1", hostname="h", concurrency=50, queues=("default",), version="t"
    )

    def reads_while(step: Callable[[], object]) -> int:
        before = _index_reads(conn, "task_runs_lock_key_idx")
        for _ in range(6):  # past the point where a plan would turn generic on its own
            step()
        conn.execute("SELECT pg_stat_force_next_flush()")
        return _index_reads(conn, "task_runs_lock_key_idx") - before

    assert reads_while(lambda: renew(conn, record, mine, 60.0)) == 0
    rest, first = mine[:40], mine[40:]
    assert reads_while(lambda: give_back(conn, "w1", first[:1])) == 0
    batch = [
        Completion(result_id=r.result_id, attempt=r.attempt, status=TaskStatus.SUCCESSFUL)
        for r in rest
    ]
    assert reads_while(lambda: flush(conn, "w1", batch)) == 0
    assert row(conn, rest[0].result_id)["status"] == "SUCCESSFUL"
    assert row(conn, first[0].result_id)["status"] == "READY"
