"""Bulk enqueue: the rows it writes either way, dedup across batches, refusals, wake-ups."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from reproq.db import Conn, connect
from reproq.errors import AlreadyQueued, InvalidSpec
from reproq.producer.bulk import BATCH_ROWS
from reproq.producer.client import Client
from reproq.producer.enqueue import NewTask, insert_tasks
from reproq.producer.signature import Signature
from reproq.spec import MAX_KEY_BYTES, build_spec

AT = dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
# Columns that differ between two writes of the same spec by design.
_PER_WRITE = {"result_id", "enqueued_at", "created_at", "updated_at", "status"}

SIGS = [
    Signature(task_path="app.tasks.plain", args=(1, "naïve\ttab\nline\\slash", None)),
    Signature(task_path="app.tasks.plain", args=(2,), kwargs={"k": [1.5, {"b": 1, "a": 2}]}),
    Signature(
        task_path="app.tasks.keyed",
        args=(1,),
        queue="emails\\eu",
        priority=-3,
        lock_key="lock\tkey",
        concurrency_key="acct:1",
        concurrency_limit=2,
        max_attempts=7,
        timeout_seconds=60,
    ),
    Signature(task_path="app.tasks.timed", args=(1,), run_after=AT, metadata={"by": "ops\n"}),
    Signature(task_path="app.tasks.extra", args=(1,), extra_spec={"django": {"s": "x.y"}}),
]


@pytest.fixture
def client(dsn: str) -> Iterator[Client]:
    with Client(dsn) as c:
        yield c


def _rows(conn: Conn, ids: list[int]) -> dict[str, dict[str, Any]]:
    found = conn.execute(
        "SELECT * FROM task_runs WHERE result_id = ANY(%s) ORDER BY result_id", (ids,)
    ).fetchall()
    return {row["spec_hash"]: row for row in found}


def _count(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) AS n FROM task_runs").fetchone()
    assert row is not None
    return int(row["n"])


def _finish_all(conn: Conn) -> None:
    conn.execute("UPDATE task_runs SET status = 'SUCCESSFUL' WHERE status = 'READY'")


def test_both_ways_of_a_bulk_enqueue_write_the_rows_a_single_enqueue_writes(
    client: Client, conn: Conn
) -> None:
    single = _rows(conn, [client.enqueue_signature(sig) for sig in SIGS])
    _finish_all(conn)
    straight_ids = client.enqueue_many(SIGS)  # no spec active, none repeated: COPY
    straight = _rows(conn, straight_ids)
    _finish_all(conn)
    buffered_ids = client.enqueue_many([*SIGS, SIGS[0]])  # a repeat: through the buffer
    assert buffered_ids[-1] == buffered_ids[0]
    buffered = _rows(conn, buffered_ids)

    assert single.keys() == straight.keys() == buffered.keys()
    for spec_hash, row in single.items():
        for other in (straight[spec_hash], buffered[spec_hash]):
            assert {k: v for k, v in other.items() if k not in _PER_WRITE} == {
                k: v for k, v in row.items() if k not in _PER_WRITE
            }
    for rows in (straight, buffered):
        (stamp,) = {r["enqueued_at"] for r in rows.values()}  # one per call
        assert all(r["created_at"] == r["updated_at"] == stamp for r in rows.values())
        assert {r["status"] for r in rows.values()} == {"READY"}


def test_a_call_of_several_batches_dedups_across_them_and_against_active_rows(
    client: Client, conn: Conn
) -> None:
    active = client.enqueue("app.tasks.big", [10])
    sigs = [Signature(task_path="app.tasks.big", args=(i,)) for i in range(2 * BATCH_ROWS + 100)]
    sigs.append(sigs[3])  # the last batch repeats a spec of the first
    ids = client.enqueue_many(sigs)
    assert len(ids) == len(sigs)
    assert ids[10] == active
    assert ids[-1] == ids[3]
    assert len(set(ids)) == len(sigs) - 1
    assert _count(conn) == len(sigs) - 1
    stored = conn.execute(
        "SELECT result_id, (spec_json->'args'->>0)::int AS arg FROM task_runs"
    ).fetchall()
    assert {r["result_id"]: r["arg"] for r in stored} == {
        rid: sig.args[0] for rid, sig in zip(ids, sigs, strict=True)
    }


def test_a_repeated_spec_without_dedup_is_refused_and_nothing_is_written(
    client: Client, conn: Conn
) -> None:
    a, b = (Signature(task_path="app.tasks.twice", args=(i,)) for i in range(2))
    with pytest.raises(AlreadyQueued):
        client.enqueue_many([a, b, a], dedup=False)
    assert _count(conn) == 0


def test_an_active_spec_without_dedup_is_refused_after_earlier_batches_went_in(
    client: Client, conn: Conn
) -> None:
    sigs = [Signature(task_path="app.tasks.late", args=(i,)) for i in range(BATCH_ROWS + 50)]
    existing = client.enqueue_signature(sigs[-1])
    with pytest.raises(AlreadyQueued) as caught:
        client.enqueue_many(sigs, dedup=False)
    assert caught.value.existing_id == existing
    assert _count(conn) == 1


def test_a_bad_signature_in_a_later_batch_leaves_nothing_of_the_call_written(
    client: Client, conn: Conn
) -> None:
    sigs = [Signature(task_path="app.tasks.bad", args=(i,)) for i in range(BATCH_ROWS + 20)]
    sigs[BATCH_ROWS + 5] = Signature(task_path="app.tasks.bad", args=("x",), max_attempts=0)
    with pytest.raises(InvalidSpec, match="max_attempts must be at least 1, got 0"):
        client.enqueue_many(sigs)
    assert _count(conn) == 0


def test_an_over_long_key_in_a_later_batch_is_refused_naming_it(client: Client, conn: Conn) -> None:
    sigs = [Signature(task_path="app.tasks.key", args=(i,)) for i in range(BATCH_ROWS + 20)]
    hostile = sigs[BATCH_ROWS + 5]
    # Signatures check their keys when made: only a caller that goes around that can send one.
    object.__setattr__(hostile, "concurrency_key", "c" * (MAX_KEY_BYTES + 1))
    with pytest.raises(
        InvalidSpec, match=rf"concurrency_key 'c+'… is {MAX_KEY_BYTES + 1} bytes, over the"
    ):
        client.enqueue_many(sigs)
    assert _count(conn) == 0


def test_a_lazy_input_of_several_batches_maps_every_id_in_order(conn: Conn) -> None:
    n = BATCH_ROWS + 7

    def tasks() -> Iterator[NewTask]:  # no len(): the call finds out it spans batches
        for i in range(n):
            yield NewTask.from_spec(build_spec("app.tasks.lazy", [i]))

    ids = insert_tasks(conn, tasks())
    assert ids == sorted(ids) and len(set(ids)) == n
    stored = conn.execute(
        "SELECT result_id, (spec_json->'args'->>0)::int AS arg FROM task_runs ORDER BY result_id"
    ).fetchall()
    assert [r["arg"] for r in stored] == list(range(n))


def test_large_specs_go_in_smaller_batches(client: Client, conn: Conn) -> None:
    sigs = [Signature(task_path="app.tasks.large", args=(i, "x" * 900_000)) for i in range(6)]
    ids = client.enqueue_many([*sigs, sigs[0]])
    assert ids[-1] == ids[0] and len(set(ids)) == 6
    assert _count(conn) == 6


def test_a_bulk_enqueue_wakes_listeners_of_each_queue_either_way(dsn: str, client: Client) -> None:
    with connect(dsn) as listener:
        listener.execute("LISTEN reproq_tasks")
        straight = [
            Signature(task_path="app.tasks.n", args=(i,), queue=q) for i, q in enumerate("ab")
        ]
        client.enqueue_many(straight)
        assert _payloads(listener) == {"a", "b"}
        buffered = [Signature(task_path="app.tasks.n", args=(9,), queue="c")] * 2
        client.enqueue_many(buffered)
        assert _payloads(listener) == {"c"}


def _payloads(listener: Conn) -> set[str]:
    return {n.payload for n in listener.notifies(timeout=2.0, stop_after=1)} | {
        n.payload for n in listener.notifies(timeout=0.2)
    }
