"""Operator writes (reproq.ops.admin): replay, cancel, retry, pause, limits, prune, schedules."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from reproq.db import Conn
from reproq.errors import (
    ActionNotAllowed,
    AlreadyQueued,
    NotFound,
    TaskNotFound,
    UsageError,
)
from reproq.ops import admin
from reproq.producer.enqueue import insert_task
from reproq.producer.signature import Signature
from reproq.producer.workflow import enqueue_chain, enqueue_chord
from reproq.spec import spec_hash


def _enqueue(conn: Conn, path: str = "app.tasks.work", *args: Any, **options: Any) -> int:
    return insert_task(conn, Signature(task_path=path, args=args, **options).to_new_task())


def _row(conn: Conn, result_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM task_runs WHERE result_id = %s", (result_id,)).fetchone()
    assert row is not None
    return row


def _status(conn: Conn, result_id: int) -> str:
    return str(_row(conn, result_id)["status"])


def _set_running(conn: Conn, result_id: int, worker: str = "w1") -> None:
    conn.execute(
        "UPDATE task_runs SET status = 'RUNNING', attempts = attempts + 1, leased_by = %s, "
        "leased_until = now() + interval '5 min', started_at = now(), "
        "worker_ids = worker_ids || jsonb_build_array(%s::text) WHERE result_id = %s",
        (worker, worker, result_id),
    )


def _set_failed(
    conn: Conn, result_id: int, *, kind: str = "app_error", message: str = "boom", attempts: int = 3
) -> None:
    errors = [
        {"kind": kind, "message": f"{message} {n}", "attempt": n, "at": "2025-01-01T00:00:00Z"}
        for n in range(1, attempts + 1)
    ]
    conn.execute(
        "UPDATE task_runs SET status = 'FAILED', attempts = %s, failed_at = now(), "
        "finished_at = now(), last_error = %s, errors_json = %s::jsonb, leased_by = 'w1', "
        "leased_until = now(), run_after = now() WHERE result_id = %s",
        (attempts, message, json.dumps(errors), result_id),
    )


def _set_finished(conn: Conn, result_id: int, status: str, *, ago: dt.timedelta) -> None:
    conn.execute(
        "UPDATE task_runs SET status = %s, finished_at = now() - %s WHERE result_id = %s",
        (status, ago, result_id),
    )


# --------------------------------------------------------------------------- replay


def test_replay_inserts_a_new_ready_row_copying_spec_and_options(conn: Conn) -> None:
    source = _enqueue(
        conn,
        "app.tasks.send",
        7,
        queue="emails",
        priority=4,
        lock_key="user:7",
        concurrency_key="smtp",
        concurrency_limit=2,
        max_attempts=5,
        timeout_seconds=60,
        metadata={"tag": "x"},
    )
    _set_failed(conn, source)

    result = admin.replay(conn, result_id=source)

    assert result.source_id == source and result.new_id != source
    old, new = _row(conn, source), _row(conn, result.new_id)
    assert new["status"] == "READY" and old["status"] == "FAILED"
    assert new["spec_json"] == old["spec_json"] and new["spec_hash"] == old["spec_hash"]
    for column in (
        "queue_name",
        "priority",
        "lock_key",
        "concurrency_key",
        "concurrency_limit",
        "max_attempts",
        "timeout_seconds",
        "task_path",
    ):
        assert new[column] == old[column], column
    assert new["metadata_json"] == {"tag": "x", "replayed_from": source}
    assert new["attempts"] == 0 and new["errors_json"] == [] and new["run_after"] is None


def test_replay_by_spec_hash_copies_the_newest_row_with_that_hash(conn: Conn) -> None:
    first = _enqueue(conn, "app.tasks.report", 1)
    _set_finished(conn, first, "SUCCESSFUL", ago=dt.timedelta(hours=2))
    second = _enqueue(conn, "app.tasks.report", 1)
    _set_finished(conn, second, "SUCCESSFUL", ago=dt.timedelta(hours=1))
    digest = str(_row(conn, first)["spec_hash"])

    result = admin.replay(conn, spec_hash=digest.upper())

    assert result.source_id == second
    assert _row(conn, result.new_id)["metadata_json"]["replayed_from"] == second


def test_replay_while_an_identical_spec_is_active_names_the_active_row(conn: Conn) -> None:
    active = _enqueue(conn, "app.tasks.report", 1)
    with pytest.raises(AlreadyQueued, match=f"result_id {active}") as info:
        admin.replay(conn, result_id=active)
    assert info.value.existing_id == active
    count = conn.execute("SELECT count(*) AS n FROM task_runs").fetchone()
    assert count is not None and count["n"] == 1


def test_replay_of_an_unknown_id_or_hash_is_task_not_found(conn: Conn) -> None:
    with pytest.raises(TaskNotFound, match="result_id 4242"):
        admin.replay(conn, result_id=4242)
    with pytest.raises(TaskNotFound, match="spec_hash"):
        admin.replay(conn, spec_hash="a" * 64)
    with pytest.raises(UsageError, match="64 hexadecimal"):
        admin.replay(conn, spec_hash="xyz")
    with pytest.raises(UsageError, match="exactly one"):
        admin.replay(conn)


# --------------------------------------------------------------------------- cancel


def test_cancel_ready_row_is_cancelled_at_once(conn: Conn) -> None:
    rid = _enqueue(conn)

    result = admin.cancel(conn, rid)

    assert result.status == "cancelled" and result.also_cancelled == ()
    row = _row(conn, rid)
    assert row["status"] == "CANCELLED"
    assert row["finished_at"] is not None
    assert row["last_error"] == "cancelled by operator"


def test_cancel_running_row_only_requests_cancellation(conn: Conn) -> None:
    rid = _enqueue(conn)
    _set_running(conn, rid)

    result = admin.cancel(conn, rid)

    assert result.status == admin.CancelOutcome.CANCEL_REQUESTED
    row = _row(conn, rid)
    assert row["status"] == "RUNNING" and row["cancel_requested"] is True
    assert row["leased_by"] == "w1"


def test_cancel_of_a_finished_row_is_not_allowed_and_names_it(conn: Conn) -> None:
    rid = _enqueue(conn)
    _set_finished(conn, rid, "SUCCESSFUL", ago=dt.timedelta(0))
    with pytest.raises(ActionNotAllowed, match=f"task {rid} is SUCCESSFUL"):
        admin.cancel(conn, rid)
    with pytest.raises(TaskNotFound, match="result_id 999999"):
        admin.cancel(conn, 999999)


def test_cancelling_a_chain_step_cancels_its_waiting_descendants(conn: Conn) -> None:
    steps = [Signature(task_path="app.tasks.step", args=(i,)) for i in range(4)]
    ids = enqueue_chain(conn, steps).result_ids

    result = admin.cancel(conn, ids[1])  # a WAITING middle step

    assert result.also_cancelled == (ids[2], ids[3])
    assert [_status(conn, i) for i in ids] == ["READY", "CANCELLED", "CANCELLED", "CANCELLED"]
    assert "upstream task" in str(_row(conn, ids[3])["last_error"])


def test_cancelling_a_chord_member_cancels_the_callback_and_fails_the_workflow(
    conn: Conn,
) -> None:
    members = [Signature(task_path="app.tasks.part", args=(i,)) for i in range(3)]
    wf = enqueue_chord(conn, members, Signature(task_path="app.tasks.total"))
    assert wf.callback_id is not None

    result = admin.cancel(conn, wf.result_ids[0])

    assert result.also_cancelled == (wf.callback_id,)
    assert _status(conn, wf.callback_id) == "CANCELLED"
    assert [_status(conn, i) for i in wf.result_ids[1:]] == ["READY", "READY"]
    flow = conn.execute(
        "SELECT status, failure_count FROM workflow_runs WHERE workflow_id = %s",
        (wf.workflow_id,),
    ).fetchone()
    assert flow == {"status": "FAILED", "failure_count": 1}


def test_bulk_cancel_reports_what_it_did_and_why_it_skipped(conn: Conn) -> None:
    ready = _enqueue(conn, "app.tasks.a")
    running = _enqueue(conn, "app.tasks.b")
    _set_running(conn, running)
    done = _enqueue(conn, "app.tasks.c")
    _set_finished(conn, done, "SUCCESSFUL", ago=dt.timedelta(0))

    result = admin.bulk_cancel(conn, [ready, running, done, 777777, ready])

    assert result.done == [ready, running]
    assert result.skipped == {done: admin.SKIP_FINISHED, 777777: admin.SKIP_NOT_FOUND}
    assert result.summary("cancelled") == "cancelled 2, skipped 1 already finished, 1 not found"


def test_bulk_cancel_counts_descendants_cancelled_by_an_earlier_id_as_done(conn: Conn) -> None:
    ids = enqueue_chain(conn, [Signature(task_path="app.tasks.s", args=(i,)) for i in range(2)])
    result = admin.bulk_cancel(conn, ids.result_ids)
    assert result.done == list(ids.result_ids) and not result.skipped


# --------------------------------------------------------------------------- retry


def test_retry_puts_a_failed_row_back_to_ready_keeping_its_error_history(conn: Conn) -> None:
    rid = _enqueue(conn)
    _set_failed(conn, rid, attempts=3)

    result = admin.retry(conn, rid)

    assert result.result_id == rid and result.revived == ()
    row = _row(conn, rid)
    assert row["status"] == "READY" and row["attempts"] == 0
    assert row["run_after"] is None and row["failed_at"] is None
    assert row["finished_at"] is None and row["last_error"] is None
    assert row["leased_by"] is None and row["leased_until"] is None
    assert [e["attempt"] for e in row["errors_json"]] == [1, 2, 3]


def test_retry_refuses_rows_that_are_not_failed(conn: Conn) -> None:
    rid = _enqueue(conn)
    with pytest.raises(ActionNotAllowed, match=f"task {rid} is READY: only FAILED"):
        admin.retry(conn, rid)
    _set_finished(conn, rid, "SUCCESSFUL", ago=dt.timedelta(0))
    with pytest.raises(ActionNotAllowed, match="replay it"):
        admin.retry(conn, rid)
    with pytest.raises(TaskNotFound, match="result_id 31337"):
        admin.retry(conn, 31337)


def test_retry_with_an_identical_active_spec_names_the_active_row(conn: Conn) -> None:
    failed = _enqueue(conn, "app.tasks.dup", 1)
    _set_failed(conn, failed)
    active = _enqueue(conn, "app.tasks.dup", 1)
    assert active != failed

    with pytest.raises(AlreadyQueued, match=f"result_id {active}"):
        admin.retry(conn, failed)
    assert _status(conn, failed) == "FAILED"


def test_retry_revives_chain_descendants_failed_because_of_it(conn: Conn) -> None:
    ids = enqueue_chain(
        conn, [Signature(task_path="app.tasks.s", args=(i,)) for i in range(3)]
    ).result_ids
    _set_failed(conn, ids[0])
    for child in ids[1:]:
        _set_failed(conn, child, kind="workflow_failed", attempts=1)

    result = admin.retry(conn, ids[0])

    assert result.revived == (ids[1], ids[2])
    assert [_status(conn, i) for i in ids] == ["READY", "WAITING", "WAITING"]
    assert all(_row(conn, i)["wait_count"] == 1 for i in ids[1:])


def test_retry_of_a_chord_member_revives_the_callback_waiting_for_unfinished_members(
    conn: Conn,
) -> None:
    members = [Signature(task_path="app.tasks.part", args=(i,)) for i in range(3)]
    wf = enqueue_chord(conn, members, Signature(task_path="app.tasks.total"))
    assert wf.callback_id is not None
    _set_finished(conn, wf.result_ids[1], "SUCCESSFUL", ago=dt.timedelta(0))
    _set_failed(conn, wf.result_ids[0])
    _set_failed(conn, wf.callback_id, kind="workflow_failed", attempts=1)
    conn.execute(
        "UPDATE workflow_runs SET status = 'FAILED', failure_count = 1 WHERE workflow_id = %s",
        (wf.workflow_id,),
    )

    result = admin.retry(conn, wf.result_ids[0])

    assert result.revived == (wf.callback_id,)
    callback = _row(conn, wf.callback_id)
    # Members 0 (retried) and 2 (still READY) have not succeeded yet.
    assert callback["status"] == "WAITING" and callback["wait_count"] == 2
    flow = conn.execute(
        "SELECT status FROM workflow_runs WHERE workflow_id = %s", (wf.workflow_id,)
    ).fetchone()
    assert flow == {"status": "RUNNING"}


def test_retry_all_retries_failed_rows_by_queue_and_task_glob(conn: Conn) -> None:
    a = _enqueue(conn, "billing.tasks.charge", 1, queue="billing")
    b = _enqueue(conn, "billing.tasks.refund", 2, queue="billing")
    c = _enqueue(conn, "mail.tasks.send", 3, queue="emails")
    for rid in (a, b, c):
        _set_failed(conn, rid)

    only_charge = admin.retry_all(conn, queue="billing", task_path="billing.*.charge")
    assert only_charge.done == [a]
    rest = admin.retry_all(conn)
    assert sorted(rest.done) == [b, c] and not rest.skipped
    with pytest.raises(UsageError):
        admin.retry_all(conn, limit=0)


def test_bulk_retry_skips_duplicates_and_non_failed_rows_with_a_summary(conn: Conn) -> None:
    first = _enqueue(conn, "app.tasks.same", 1)
    _set_failed(conn, first)
    second = _enqueue(conn, "app.tasks.same", 1)
    _set_failed(conn, second)
    ready = _enqueue(conn, "app.tasks.other")

    result = admin.bulk_retry(conn, [first, second, ready])

    assert result.done == [first]
    assert result.skipped == {second: admin.SKIP_DUPLICATE, ready: admin.SKIP_NOT_FAILED}
    assert result.summary("retried") == (
        "retried 1, skipped 1 duplicate of an active task, 1 not FAILED"
    )


# --------------------------------------------------------------------------- queues


def test_pause_and_resume_upsert_the_queue_control(conn: Conn) -> None:
    paused = admin.pause_queue(conn, "emails", "smtp down")
    assert paused.paused and paused.reason == "smtp down" and paused.paused_at is not None

    again = admin.pause_queue(conn, "emails", "still down")
    assert again.paused_at == paused.paused_at and again.reason == "still down"

    resumed = admin.resume_queue(conn, "emails")
    assert not resumed.paused and resumed.reason is None and resumed.paused_at is None
    row = conn.execute(
        "SELECT paused FROM reproq_queue_controls WHERE queue_name = 'emails'"
    ).fetchone()
    assert row == {"paused": False}
    with pytest.raises(UsageError):
        admin.pause_queue(conn, " ")


# --------------------------------------------------------------------------- limits


def test_set_limit_creates_and_updates_a_bucket(conn: Conn) -> None:
    created = admin.set_limit(conn, "queue:emails", 5, 10)
    assert (created.tokens_per_second, created.burst_size, created.current_tokens) == (5, 10, 10)

    changed = admin.set_limit(conn, "queue:emails", 1.5, 3)
    assert (changed.tokens_per_second, changed.burst_size, changed.current_tokens) == (1.5, 3, 3)
    assert changed.scope == "queue" and changed.target == "emails"


@pytest.mark.parametrize(
    ("key", "rate", "burst", "message"),
    [
        ("emails", 1, 1, "must be 'global'"),
        ("task:", 1, 1, "must be 'global'"),
        ("queue:a b", 1, 1, "must be 'global'"),
        ("global", -1, 1, "rate must be a number >= 0"),
        ("global", float("nan"), 1, "rate must be"),
        ("global", 1, 0, "burst must be a positive integer"),
    ],
)
def test_set_limit_rejects_bad_keys_rates_and_bursts(
    conn: Conn, key: str, rate: float, burst: int, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        admin.set_limit(conn, key, rate, burst)


def test_remove_limit_deletes_it_but_resets_the_global_row(conn: Conn) -> None:
    admin.set_limit(conn, "task:app.tasks.x", 2, 2)
    admin.set_limit(conn, "global", 100, 50)

    assert admin.remove_limit(conn, "task:app.tasks.x").reset is False
    assert admin.remove_limit(conn, "global").reset is True

    rows = conn.execute("SELECT key, tokens_per_second FROM rate_limits ORDER BY key").fetchall()
    assert rows == [{"key": "global", "tokens_per_second": 0.0}]
    with pytest.raises(NotFound, match="no rate limit with key 'queue:nope'"):
        admin.remove_limit(conn, "queue:nope")


# --------------------------------------------------------------------------- prune


def test_prune_expired_deletes_expired_rows_except_running_ones(conn: Conn) -> None:
    past = -3600.0
    expired_ready = _enqueue(conn, "app.tasks.a", expires_in=past)
    expired_running = _enqueue(conn, "app.tasks.b", expires_in=past)
    _set_running(conn, expired_running)
    expired_failed = _enqueue(conn, "app.tasks.c", expires_in=past)
    _set_failed(conn, expired_failed)
    fresh = _enqueue(conn, "app.tasks.d", expires_in=3600)
    forever = _enqueue(conn, "app.tasks.e")

    assert admin.prune_expired(conn, dry_run=True) == 2
    assert admin.prune_expired(conn, limit=1) == 1
    assert admin.prune_expired(conn, batch=1) == 1

    left = {r["result_id"] for r in conn.execute("SELECT result_id FROM task_runs")}
    assert left == {expired_running, fresh, forever}
    assert expired_ready not in left
    with pytest.raises(UsageError):
        admin.prune_expired(conn, limit=0)


def test_prune_finished_deletes_old_finished_rows_in_batches_only(conn: Conn) -> None:
    old = [_enqueue(conn, "app.tasks.old", i) for i in range(5)]
    for rid in old[:3]:
        _set_finished(conn, rid, "SUCCESSFUL", ago=dt.timedelta(days=8))
    _set_finished(conn, old[3], "FAILED", ago=dt.timedelta(days=8))
    _set_finished(conn, old[4], "CANCELLED", ago=dt.timedelta(days=8))
    recent = _enqueue(conn, "app.tasks.recent")
    _set_finished(conn, recent, "SUCCESSFUL", ago=dt.timedelta(days=1))
    ready = _enqueue(conn, "app.tasks.ready")
    running = _enqueue(conn, "app.tasks.running")
    _set_running(conn, running)
    waiting = enqueue_chain(
        conn, [Signature(task_path="app.tasks.p"), Signature(task_path="app.tasks.child")]
    ).result_ids
    _set_finished(conn, waiting[0], "SUCCESSFUL", ago=dt.timedelta(days=9))
    week = dt.timedelta(days=7)

    assert admin.prune_finished(conn, older_than=week, dry_run=True) == 6
    assert admin.prune_finished(conn, older_than=week, statuses=["failed"]) == 1
    assert admin.prune_finished(conn, older_than=week, batch=2) == 5

    left = {r["result_id"] for r in conn.execute("SELECT result_id FROM task_runs")}
    assert left == {recent, ready, running, waiting[1]}
    # The chain child outlives its pruned parent, detached.
    assert _row(conn, waiting[1])["parent_id"] is None


def test_prune_finished_refuses_active_statuses(conn: Conn) -> None:
    with pytest.raises(UsageError, match="not RUNNING"):
        admin.prune_finished(conn, older_than=dt.timedelta(days=1), statuses=["RUNNING"])
    with pytest.raises(UsageError, match="unknown status"):
        admin.prune_finished(conn, older_than=dt.timedelta(days=1), statuses=["DONE"])
    with pytest.raises(UsageError, match="negative"):
        admin.prune_finished(conn, older_than=dt.timedelta(days=-1))


def test_prune_workers_forgets_workers_not_seen_recently(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO reproq_workers (worker_id, hostname, concurrency, queues, started_at, "
        "last_seen_at, version) VALUES "
        "('old', 'h', 1, '[]', now(), now() - interval '1 hour', '1'), "
        "('new', 'h', 1, '[]', now(), now(), '1')"
    )
    assert admin.prune_workers(conn, older_than=dt.timedelta(minutes=10), dry_run=True) == 1
    assert admin.prune_workers(conn, older_than=dt.timedelta(minutes=10)) == 1
    left = [r["worker_id"] for r in conn.execute("SELECT worker_id FROM reproq_workers")]
    assert left == ["new"]


# --------------------------------------------------------------------------- schedules


def _schedule(conn: Conn, name: str, payload: Any) -> None:
    conn.execute(
        "INSERT INTO periodic_tasks (name, cron_expr, task_path, payload_json, queue_name, "
        "priority, max_attempts, concurrency_limit, next_run_at, enabled, created_at, "
        "updated_at) VALUES (%s, '*/5 * * * *', 'app.tasks.report', %s::jsonb, 'reports', 3, "
        "2, 0, now() + interval '1 hour', true, now(), now())",
        (name, json.dumps(payload)),
    )


def test_set_schedule_enabled_toggles_the_row(conn: Conn) -> None:
    _schedule(conn, "nightly", {})
    assert admin.set_schedule_enabled(conn, "nightly", False) == admin.ScheduleState(
        name="nightly", enabled=False
    )
    row = conn.execute("SELECT enabled FROM periodic_tasks WHERE name = 'nightly'").fetchone()
    assert row == {"enabled": False}
    with pytest.raises(NotFound, match="no schedule named 'nope'"):
        admin.set_schedule_enabled(conn, "nope", True)


@pytest.mark.parametrize(
    ("payload", "args", "kwargs"),
    [
        ({"args": [1, 2], "kwargs": {"full": True}}, [1, 2], {"full": True}),
        ([3, 4], [3, 4], {}),
        ({"day": "mon"}, [], {"day": "mon"}),
        ({}, [], {}),
    ],
)
def test_run_schedule_now_enqueues_one_run_like_beat_would(
    conn: Conn, payload: Any, args: list[Any], kwargs: dict[str, Any]
) -> None:
    _schedule(conn, "nightly", payload)

    rid = admin.run_schedule_now(conn, "nightly")

    row = _row(conn, rid)
    spec = row["spec_json"]
    assert (spec["args"], spec["kwargs"]) == (args, kwargs)
    assert spec["periodic_name"] == "nightly" and spec["scheduled_at"]
    assert row["spec_hash"] == spec_hash(spec)
    assert (row["queue_name"], row["priority"], row["max_attempts"]) == ("reports", 3, 2)
    assert row["status"] == "READY"
    sched = conn.execute("SELECT last_run_at FROM periodic_tasks").fetchone()
    assert sched == {"last_run_at": None}
    with pytest.raises(NotFound):
        admin.run_schedule_now(conn, "nope")
