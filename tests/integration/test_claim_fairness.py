"""The fairness rules hold on both claim statements: the lean round trip and the full claim.

Both take their candidates and order from one SQL fragment; these tests run the same
scenarios through each statement and expect the same rows in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from psycopg.rows import tuple_row

from reproq.db import Conn
from reproq.engine import round_trip
from reproq.engine.claim import MAX_PRIORITY_LEVELS, Claimer
from reproq.queries import q
from tests.integration.worker_harness import enqueue

STATEMENTS = ("worker_sync", "worker_claim")


def _claim(
    conn: Conn, statement: str, n: int, queues: Sequence[str] = ("default",), aging: float = 0.0
) -> list[int]:
    """The result ids one claim statement takes (which rows, not in any order)."""
    params: dict[str, Any] = {
        "queues": list(queues),
        "n": n,
        "scan": n + 8,
        "aging": aging,
        "max_levels": MAX_PRIORITY_LEVELS,
        "lock_keys": [],
        "conc_keys": [],
        "worker_id": "fair",
        "lease_seconds": 60.0,
    }
    if statement == "worker_sync":
        cur = round_trip.send(conn, worker_id="fair", claim=params)
    else:
        cur = conn.cursor(row_factory=tuple_row)
        cur.execute(q("worker_claim"), params)
    reader = Claimer(worker_id="fair", queues=queues, lease_seconds=60, priority_aging_factor=aging)
    result = reader.read(cur)
    assert not result.escalate and not result.deferred and not result.limited
    return sorted(r.result_id for r in result.rows)


def _age(conn: Conn, result_id: int, seconds: float) -> None:
    conn.execute(
        "UPDATE task_runs SET enqueued_at = enqueued_at - make_interval(secs => %s) "
        "WHERE result_id = %s",
        (seconds, result_id),
    )


@pytest.mark.parametrize("statement", STATEMENTS)
def test_higher_priority_first_then_fifo_within_a_priority(conn: Conn, statement: str) -> None:
    low1 = enqueue(conn, "add", 1, 0, priority=0)
    high1 = enqueue(conn, "add", 2, 0, priority=10)
    low2 = enqueue(conn, "add", 3, 0, priority=0)
    high2 = enqueue(conn, "add", 4, 0, priority=10)
    mid = enqueue(conn, "add", 5, 0, priority=5)
    for i, rid in enumerate([low1, high1, low2, high2, mid]):
        _age(conn, rid, 50 - i)
    taken = [_claim(conn, statement, 1)[0] for _ in range(5)]
    assert taken == [high1, high2, mid, low1, low2]


@pytest.mark.parametrize("statement", STATEMENTS)
def test_one_stream_is_taken_in_fifo_order(conn: Conn, statement: str) -> None:
    ids = [enqueue(conn, "add", i, 0) for i in range(6)]
    for i, rid in enumerate(ids):
        _age(conn, rid, 60 - i)
    assert _claim(conn, statement, 4) == ids[:4]
    assert _claim(conn, statement, 4) == ids[4:]


@pytest.mark.parametrize("statement", STATEMENTS)
def test_aging_lets_a_long_waiting_row_overtake_and_zero_aging_is_strict(
    conn: Conn, statement: str
) -> None:
    old_low = enqueue(conn, "add", 1, 0, priority=0)
    fresh_high = enqueue(conn, "add", 2, 0, priority=2)
    _age(conn, old_low, 300)  # at 60 s per point: effective priority 5
    other_low = enqueue(conn, "add", 3, 0, priority=0)
    other_high = enqueue(conn, "add", 4, 0, priority=2)
    _age(conn, other_low, 300)
    assert _claim(conn, statement, 1, aging=60) == [old_low]
    assert _claim(conn, statement, 1, aging=0) == [fresh_high]
    assert _claim(conn, statement, 1, aging=0) == [other_high]


@pytest.mark.parametrize("statement", STATEMENTS)
def test_queues_are_interleaved_round_robin(conn: Conn, statement: str) -> None:
    busy = [enqueue(conn, "add", i, 0, queue="busy", priority=5) for i in range(20)]
    quiet = [enqueue(conn, "add", i, 1, queue="quiet") for i in range(3)]
    for i, rid in enumerate(busy + quiet):
        _age(conn, rid, 100 - i)
    # Rank within the queue first, then the queue's place in the list: a tie goes to the
    # queue listed first, and the worker rotates the list from one claim to the next.
    assert _claim(conn, statement, 3, queues=("busy", "quiet")) == sorted(
        [busy[0], quiet[0], busy[1]]
    )
    assert _claim(conn, statement, 3, queues=("quiet", "busy")) == sorted(
        [quiet[1], busy[2], quiet[2]]
    )


@pytest.mark.parametrize("statement", STATEMENTS)
def test_paused_queues_and_rows_not_yet_due_are_skipped_and_due_retries_taken(
    conn: Conn, statement: str
) -> None:
    enqueue(conn, "add", 1, 1, queue="emails")  # paused below
    later = enqueue(conn, "add", 2, 2)
    conn.execute(
        "UPDATE task_runs SET run_after = now() + interval '1 hour' WHERE result_id = %s",
        (later,),
    )
    retry = enqueue(conn, "add", 3, 3)
    conn.execute(
        "UPDATE task_runs SET attempts = 1, run_after = now() - interval '1 second' "
        "WHERE result_id = %s",
        (retry,),
    )
    fresh = enqueue(conn, "add", 4, 4)
    conn.execute(
        "INSERT INTO reproq_queue_controls (queue_name, paused, paused_at, reason, created_at, "
        "updated_at) VALUES ('emails', true, now(), 'test', now(), now())"
    )
    taken = _claim(conn, statement, 10, queues=("default", "emails"))
    assert taken == sorted([retry, fresh])
