"""Concurrent bulk enqueues of overlapping specs: no deadlock, one row per spec, shared ids.

Two ``enqueue_many`` calls whose lists share specs in opposite orders used to lock the
unique active-spec index entries in opposite orders and deadlock.
"""

from __future__ import annotations

import threading

import pytest

from reproq.db import Conn
from reproq.producer.bulk import BATCH_ROWS
from reproq.producer.client import Client
from reproq.producer.signature import Signature


def _race(dsn: str, first: list[Signature], second: list[Signature]) -> list[list[int]]:
    """Run both bulk enqueues at once; their ids, in input order."""
    results: list[list[int]] = [[], []]
    failures: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(slot: int, sigs: list[Signature]) -> None:
        with Client(dsn, max_connections=1) as client:
            with client.connection():
                pass  # connected before the race starts
            barrier.wait()
            try:
                results[slot] = client.enqueue_many(sigs)
            except BaseException as exc:
                failures.append(exc)

    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    return results


def _check(
    conn: Conn, first: list[Signature], second: list[Signature], ids: list[list[int]]
) -> None:
    by_spec: dict[tuple[object, ...], set[int]] = {}
    for sigs, got in zip((first, second), ids, strict=True):
        assert len(got) == len(sigs)
        for sig, rid in zip(sigs, got, strict=True):
            by_spec.setdefault(tuple(sig.args), set()).add(rid)
    # Every spec, shared or not, maps to exactly one id, the same for both callers.
    assert all(len(found) == 1 for found in by_spec.values())
    rows = conn.execute(
        "SELECT count(*) AS n, count(DISTINCT spec_hash) AS specs FROM task_runs"
    ).fetchone()
    assert rows is not None
    assert rows["n"] == rows["specs"] == len(by_spec)


def _sigs(trial: int, numbers: range) -> list[Signature]:
    return [Signature(task_path="app.tasks.race", args=(trial, i)) for i in numbers]


@pytest.mark.parametrize("trial", range(10))
def test_overlapping_reversed_bulk_enqueues_never_deadlock(
    dsn: str, conn: Conn, trial: int
) -> None:
    first = _sigs(trial, range(0, 600))
    second = list(reversed(_sigs(trial, range(300, 900))))
    _check(conn, first, second, _race(dsn, first, second))


def test_the_same_list_reversed_from_both_sides(dsn: str, conn: Conn) -> None:
    first = _sigs(0, range(1000))
    _check(conn, first, first[::-1], _race(dsn, first, first[::-1]))


def test_calls_spanning_several_batches_never_deadlock(dsn: str, conn: Conn) -> None:
    """Sorting inside one INSERT is not enough when a call inserts several batches."""
    n = BATCH_ROWS * 2 + 500
    first = _sigs(0, range(n))
    second = list(reversed(_sigs(0, range(BATCH_ROWS // 2, n + BATCH_ROWS // 2))))
    _check(conn, first, second, _race(dsn, first, second))


def test_a_small_call_and_a_call_spanning_batches_never_deadlock(dsn: str, conn: Conn) -> None:
    big = _sigs(0, range(BATCH_ROWS + 1000))
    small = list(reversed(big[BATCH_ROWS - 2000 : BATCH_ROWS + 200]))
    _check(conn, big, small, _race(dsn, big, small))


def test_overlapping_calls_over_partly_active_specs_never_deadlock(dsn: str, conn: Conn) -> None:
    """Specs already active turn both calls to the buffered way partway through."""
    n = BATCH_ROWS + 800
    first = _sigs(0, range(n))
    second = list(reversed(_sigs(0, range(400, n + 400))))
    with Client(dsn) as client:
        client.enqueue_many(first[BATCH_ROWS : BATCH_ROWS + 3])
    _check(conn, first, second, _race(dsn, first, second))
