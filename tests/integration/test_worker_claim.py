"""Claiming: what is taken, in which order, and what each claim writes on the row."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from reproq.db import Conn
from reproq.engine.claim import Claimer
from reproq.models import TaskStatus
from tests.integration.worker_harness import enqueue, row, running, wait_all, wait_status


def _claimer(
    queues: tuple[str, ...] = ("default",), aging: float = 0.0, wid: str = "w1"
) -> Claimer:
    return Claimer(worker_id=wid, queues=queues, lease_seconds=60, priority_aging_factor=aging)


def _claim_ids(conn: Conn, claimer: Claimer, n: int) -> list[int]:
    return [r.result_id for r in claimer.claim(conn, n).rows]


def _age(conn: Conn, result_id: int, seconds: float) -> None:
    conn.execute(
        "UPDATE task_runs SET enqueued_at = enqueued_at - make_interval(secs => %s) "
        "WHERE result_id = %s",
        (seconds, result_id),
    )


def test_a_claim_sets_running_lease_attempt_timestamps_and_worker_ids(conn: Conn) -> None:
    rid = enqueue(conn, "add", 1, 2)
    before = row(conn, rid)
    (claimed,) = _claimer(wid="w-a").claim(conn, 5).rows
    after = row(conn, rid)
    assert claimed.result_id == rid and claimed.attempt == 1
    assert after["status"] == TaskStatus.RUNNING
    assert after["attempts"] == before["attempts"] + 1
    assert after["leased_by"] == "w-a"
    assert after["leased_until"] > after["last_attempted_at"]
    assert after["started_at"] is not None and after["worker_ids"] == ["w-a"]
    assert after["updated_at"] >= before["updated_at"]


def test_started_at_is_set_on_the_first_claim_only_and_every_claimer_is_appended(
    conn: Conn,
) -> None:
    rid = enqueue(conn, "add", 1, 2)
    _claimer(wid="w-a").claim(conn, 1)
    first = row(conn, rid)
    conn.execute(
        "UPDATE task_runs SET status = 'READY', leased_by = NULL, leased_until = NULL "
        "WHERE result_id = %s",
        (rid,),
    )
    time.sleep(0.01)
    (again,) = _claimer(wid="w-b").claim(conn, 1).rows
    second = row(conn, rid)
    assert again.attempt == 2
    assert second["started_at"] == first["started_at"]
    assert second["last_attempted_at"] > first["last_attempted_at"]
    assert second["worker_ids"] == ["w-a", "w-b"]


def test_a_claim_takes_at_most_the_free_slots(conn: Conn) -> None:
    for i in range(10):
        enqueue(conn, "add", i, 0)
    assert len(_claimer().claim(conn, 3).rows) == 3
    assert len(_claimer().claim(conn, 100).rows) == 7


def test_waiting_cancelled_and_finished_rows_are_never_claimed(conn: Conn) -> None:
    ids = {s: enqueue(conn, "add", i, 0) for i, s in enumerate(["WAITING", "CANCELLED", "FAILED"])}
    for status, rid in ids.items():
        conn.execute("UPDATE task_runs SET status = %s WHERE result_id = %s", (status, rid))
    ready = enqueue(conn, "add", 9, 9)
    assert _claim_ids(conn, _claimer(), 10) == [ready]


def test_rows_whose_run_after_is_in_the_future_wait_until_due(conn: Conn) -> None:
    later = enqueue(conn, "add", 1, 1, run_after=dt.timedelta(hours=1))
    assert _claim_ids(conn, _claimer(), 10) == []
    conn.execute(
        "UPDATE task_runs SET run_after = now() - interval '1 second' WHERE result_id = %s",
        (later,),
    )
    assert _claim_ids(conn, _claimer(), 10) == [later]


def test_a_paused_queue_is_never_claimed_from_until_resumed(conn: Conn) -> None:
    paused = enqueue(conn, "add", 1, 1, queue="emails")
    other = enqueue(conn, "add", 2, 2)
    conn.execute(
        "INSERT INTO reproq_queue_controls (queue_name, paused, paused_at, reason, created_at, "
        "updated_at) VALUES ('emails', true, now(), 'test', now(), now())"
    )
    claimer = _claimer(queues=("default", "emails"))
    assert _claim_ids(conn, claimer, 10) == [other]
    assert _claim_ids(conn, claimer, 10) == []
    conn.execute("UPDATE reproq_queue_controls SET paused = false WHERE queue_name = 'emails'")
    assert _claim_ids(conn, claimer, 10) == [paused]


def test_only_the_worker_s_queues_are_claimed(conn: Conn) -> None:
    enqueue(conn, "add", 1, 1, queue="elsewhere")
    mine = enqueue(conn, "add", 2, 2, queue="mine")
    assert _claim_ids(conn, _claimer(queues=("mine",)), 10) == [mine]


def test_higher_priority_first_then_fifo_within_a_priority(conn: Conn) -> None:
    low1 = enqueue(conn, "add", 1, 0, priority=0)
    high1 = enqueue(conn, "add", 2, 0, priority=10)
    low2 = enqueue(conn, "add", 3, 0, priority=0)
    high2 = enqueue(conn, "add", 4, 0, priority=10)
    mid = enqueue(conn, "add", 5, 0, priority=5)
    for i, rid in enumerate([low1, high1, low2, high2, mid]):
        _age(conn, rid, 50 - i)  # distinct enqueue times in this order
    claimer = _claimer()
    assert [_claim_ids(conn, claimer, 1)[0] for _ in range(5)] == [high1, high2, mid, low1, low2]


def test_aging_lets_a_long_waiting_low_priority_row_overtake_a_fresh_high_one(conn: Conn) -> None:
    old_low = enqueue(conn, "add", 1, 0, priority=0)
    fresh_high = enqueue(conn, "add", 2, 0, priority=2)
    _age(conn, old_low, 300)  # 300 s of waiting at 60 s per point: effective priority 5
    assert _claim_ids(conn, _claimer(aging=60), 1) == [old_low]
    assert _claim_ids(conn, _claimer(aging=60), 1) == [fresh_high]


def test_without_aging_priority_is_strict(conn: Conn) -> None:
    old_low = enqueue(conn, "add", 1, 0, priority=0)
    fresh_high = enqueue(conn, "add", 2, 0, priority=2)
    _age(conn, old_low, 300)
    assert _claim_ids(conn, _claimer(aging=0), 1) == [fresh_high]


def test_queues_are_interleaved_so_a_busy_queue_does_not_starve_another(conn: Conn) -> None:
    busy = [enqueue(conn, "add", i, 0, queue="busy", priority=5) for i in range(20)]
    quiet = [enqueue(conn, "add", i, 1, queue="quiet") for i in range(3)]
    rows = _claimer(queues=("busy", "quiet")).claim(conn, 6).rows
    got = {r.result_id for r in rows}
    assert set(quiet) <= got  # priority 5 in "busy" does not lock "quiet" out
    assert len(got & set(busy)) == 3


def test_retried_rows_that_are_due_are_claimed_alongside_new_rows(conn: Conn) -> None:
    retried = enqueue(conn, "add", 1, 0)
    conn.execute(
        "UPDATE task_runs SET attempts = 1, run_after = now() - interval '1 second' "
        "WHERE result_id = %s",
        (retried,),
    )
    fresh = enqueue(conn, "add", 2, 0)
    got = _claimer().claim(conn, 5).rows
    assert {r.result_id for r in got} == {retried, fresh}
    assert {r.result_id: r.attempt for r in got}[retried] == 2


def _set_limit(conn: Conn, key: str, rate: float, burst: int, tokens: float) -> None:
    conn.execute(
        "INSERT INTO rate_limits (key, tokens_per_second, burst_size, current_tokens, "
        "last_refilled_at) VALUES (%s, %s, %s, %s, now()) ON CONFLICT (key) DO UPDATE SET "
        "tokens_per_second = EXCLUDED.tokens_per_second, burst_size = EXCLUDED.burst_size, "
        "current_tokens = EXCLUDED.current_tokens, last_refilled_at = now()",
        (key, rate, burst, tokens),
    )


def _bucket(conn: Conn, key: str) -> dict[str, Any]:
    found = conn.execute("SELECT * FROM rate_limits WHERE key = %s", (key,)).fetchone()
    assert found is not None
    return found


def test_a_rate_limit_lets_a_claim_take_only_the_tokens_in_the_bucket(conn: Conn) -> None:
    for i in range(10):
        enqueue(conn, "add", i, 0)
    _set_limit(conn, "global", rate=0.001, burst=3, tokens=3)
    result = _claimer().claim(conn, 10)
    assert len(result.rows) == 3
    assert _bucket(conn, "global")["current_tokens"] < 1
    again = _claimer().claim(conn, 10)
    assert again.rows == [] and again.limited


def test_the_bucket_refills_with_time_up_to_its_burst(conn: Conn) -> None:
    for i in range(10):
        enqueue(conn, "add", i, 0)
    _set_limit(conn, "queue:default", rate=1000, burst=4, tokens=0)
    conn.execute(
        "UPDATE rate_limits SET last_refilled_at = now() - interval '10 seconds' "
        "WHERE key = 'queue:default'"
    )
    assert len(_claimer().claim(conn, 10).rows) == 4  # refilled, but never beyond the burst


def test_the_most_specific_rate_limit_applies_and_rate_zero_means_unlimited(conn: Conn) -> None:
    for i in range(4):
        enqueue(conn, "add", i, 0)
        enqueue(conn, "echo", i)
    _set_limit(conn, "global", rate=0.001, burst=1, tokens=0)
    _set_limit(conn, "task:tests.tasks.sample.echo", rate=0, burst=1, tokens=0)
    got = _claimer().claim(conn, 20).rows
    paths = {row(conn, r.result_id)["task_path"] for r in got}
    assert paths == {"tests.tasks.sample.echo"} and len(got) == 4


def test_lock_key_rows_run_one_at_a_time(conn: Conn) -> None:
    a1 = enqueue(conn, "add", 1, 0, lock_key="acct:1")
    enqueue(conn, "add", 2, 0, lock_key="acct:1")
    b1 = enqueue(conn, "add", 3, 0, lock_key="acct:2")
    claimer = _claimer()
    first = claimer.claim(conn, 10)
    assert {r.result_id for r in first.rows} == {a1, b1}
    assert claimer.claim(conn, 10).rows == []  # acct:1 is RUNNING
    conn.execute("UPDATE task_runs SET status = 'SUCCESSFUL' WHERE result_id = %s", (a1,))
    assert len(claimer.claim(conn, 10).rows) == 1


def test_concurrency_limit_caps_running_rows_of_a_key(conn: Conn) -> None:
    for i in range(6):
        enqueue(conn, "add", i, 0, concurrency_key="api", concurrency_limit=2)
    claimer = _claimer()
    assert len(claimer.claim(conn, 10).rows) == 2
    assert claimer.claim(conn, 10).rows == []


def test_a_running_worker_respects_a_rate_limit(dsn: str, conn: Conn) -> None:
    from reproq.ops import admin

    admin.set_limit(conn, "global", rate=10, burst=2)
    ids = [enqueue(conn, "add", i, 0) for i in range(10)]
    with running(dsn, concurrency=10):
        wait_all(conn, ids, "SUCCESSFUL", timeout=20)
    span = conn.execute(
        "SELECT extract(epoch FROM max(started_at) - min(started_at))::float8 AS s "
        "FROM task_runs WHERE result_id = ANY(%s)",
        (ids,),
    ).fetchone()
    # Two from the burst, then 8 more at 10 per second: not before ~0.8 s.
    assert span is not None and span["s"] >= 0.6


def test_a_running_worker_leaves_a_paused_queue_alone_until_it_is_resumed(
    dsn: str, conn: Conn
) -> None:
    from reproq.ops import admin

    admin.pause_queue(conn, "default", reason="maintenance")
    rid = enqueue(conn, "add", 1, 1)
    with running(dsn, max_poll_interval=0.2):
        time.sleep(1.0)
        assert row(conn, rid)["status"] == "READY"
        admin.resume_queue(conn, "default")
        wait_status(conn, rid, "SUCCESSFUL", timeout=5)
