"""Enqueue: rows as reproq-django writes them, dedup (also under concurrency), bulk, workflows."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Iterator

import pytest

from reproq.db import Conn
from reproq.errors import AlreadyQueued, InvalidSpec, PayloadTooLarge
from reproq.producer.client import Client
from reproq.producer.signature import Signature
from reproq.producer.task import task
from reproq.spec import spec_hash


@pytest.fixture
def client(dsn: str) -> Iterator[Client]:
    with Client(dsn) as c:
        yield c


def test_enqueue_writes_the_row_and_spec_reproq_django_expects(client: Client, conn: Conn) -> None:
    rid = client.enqueue(
        "myapp.tasks.send_email",
        [123],
        {"welcome": True},
        queue="emails",
        priority=5,
        lock_key="user:123",
        concurrency_key="acct:1",
        concurrency_limit=2,
        max_attempts=5,
        timeout_seconds=60,
        expires_in=3600,
    )
    row = conn.execute("SELECT * FROM task_runs WHERE result_id = %s", (rid,)).fetchone()
    assert row is not None
    spec = row["spec_json"]
    assert spec["task_path"] == "myapp.tasks.send_email"
    assert spec["args"] == [123] and spec["kwargs"] == {"welcome": True}
    assert spec["exec"] == {"timeout_seconds": 60, "max_attempts": 5}
    assert row["spec_hash"] == spec_hash(spec)
    assert row["status"] == "READY"
    assert row["task_path"] == "myapp.tasks.send_email"
    assert (row["queue_name"], row["priority"], row["max_attempts"]) == ("emails", 5, 5)
    assert (row["lock_key"], row["concurrency_key"], row["concurrency_limit"]) == (
        "user:123",
        "acct:1",
        2,
    )
    assert row["attempts"] == 0 and row["worker_ids"] == [] and row["errors_json"] == []
    assert row["expires_at"] > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=59)


def test_identical_active_spec_returns_the_existing_id(client: Client, conn: Conn) -> None:
    first = client.enqueue("app.tasks.report", [1])
    again = client.enqueue("app.tasks.report", [1])
    assert again == first
    count = conn.execute("SELECT count(*) AS n FROM task_runs").fetchone()
    assert count is not None and count["n"] == 1


def test_no_dedup_on_an_active_duplicate_raises_already_queued(client: Client) -> None:
    first = client.enqueue("app.tasks.report", [1])
    with pytest.raises(AlreadyQueued) as info:
        client.enqueue("app.tasks.report", [1], dedup=False)
    assert info.value.existing_id == first
    assert str(first) in str(info.value)


def test_a_finished_spec_can_be_enqueued_again(client: Client, conn: Conn) -> None:
    first = client.enqueue("app.tasks.report", [1])
    conn.execute("UPDATE task_runs SET status = 'SUCCESSFUL' WHERE result_id = %s", (first,))
    second = client.enqueue("app.tasks.report", [1], dedup=False)
    assert second != first


def test_concurrent_identical_enqueues_make_one_active_row(dsn: str, conn: Conn) -> None:
    ids: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def producer() -> None:
        with Client(dsn, max_connections=1) as c:
            barrier.wait()
            try:
                for _ in range(20):
                    ids.append(c.enqueue("app.tasks.race", [42]))
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=producer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(ids)) == 1
    count = conn.execute("SELECT count(*) AS n FROM task_runs").fetchone()
    assert count is not None and count["n"] == 1


def test_bulk_enqueue_returns_ids_in_input_order_and_dedups(client: Client, conn: Conn) -> None:
    existing = client.enqueue("app.tasks.bulk", [5])
    sigs = [Signature(task_path="app.tasks.bulk", args=(i,)) for i in range(12000)]
    ids = client.enqueue_many(sigs)
    assert len(ids) == 12000
    assert ids[5] == existing
    assert len(set(ids)) == 12000
    rows = conn.execute(
        "SELECT result_id, spec_json->'args'->>0 AS arg FROM task_runs WHERE result_id = ANY(%s)",
        (ids,),
    ).fetchall()
    by_id = {r["result_id"]: int(r["arg"]) for r in rows}
    assert [by_id[i] for i in ids] == list(range(12000))


def test_bulk_enqueue_uses_the_reserved_ids_when_they_are_not_one_unbroken_run(
    client: Client, conn: Conn
) -> None:
    # Ids taken by other enqueues in between look like a sequence that skips: every id
    # reserved must still reach its row, in input order.
    conn.execute("ALTER SEQUENCE task_runs_result_id_seq INCREMENT BY 3")
    sigs = [Signature(task_path="app.tasks.gaps", args=(i,)) for i in range(50)]
    ids = client.enqueue_many(sigs)
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert {b - a for a, b in itertools.pairwise(ids)} == {3}
    rows = conn.execute(
        "SELECT result_id, spec_json->'args'->>0 AS arg FROM task_runs WHERE result_id = ANY(%s)",
        (ids,),
    ).fetchall()
    stored = sorted((r["result_id"], int(r["arg"])) for r in rows)
    assert stored == list(zip(ids, range(50), strict=True))


def test_bulk_enqueue_with_in_batch_duplicates_maps_both_to_one_row(client: Client) -> None:
    sig = Signature(task_path="app.tasks.twice", args=(1,))
    ids = client.enqueue_many([sig, sig])
    assert ids[0] == ids[1]


def test_bulk_enqueue_without_dedup_is_all_or_nothing(client: Client, conn: Conn) -> None:
    client.enqueue("app.tasks.bulk", [3])
    sigs = [Signature(task_path="app.tasks.bulk", args=(i,)) for i in range(5)]
    with pytest.raises(AlreadyQueued):
        client.enqueue_many(sigs, dedup=False)
    count = conn.execute("SELECT count(*) AS n FROM task_runs").fetchone()
    assert count is not None and count["n"] == 1


def test_huge_payload_is_refused_with_its_size(client: Client) -> None:
    with pytest.raises(PayloadTooLarge, match="over the 1048576-byte limit"):
        client.enqueue("app.tasks.big", ["x" * (1024 * 1024 + 10)])


def test_relative_run_after_and_naive_datetimes(client: Client, conn: Conn) -> None:
    rid = client.enqueue("app.tasks.later", run_after=dt.timedelta(seconds=30))
    row = conn.execute("SELECT run_after FROM task_runs WHERE result_id = %s", (rid,)).fetchone()
    assert row is not None and row["run_after"] > dt.datetime.now(dt.UTC)
    with pytest.raises(InvalidSpec, match="no timezone"):
        client.enqueue("app.tasks.later", run_after=dt.datetime(2030, 1, 1))


def test_task_decorator_enqueues_by_its_dotted_path(client: Client, conn: Conn) -> None:
    @task(name="app.tasks.send", queue="high", priority=3)
    def send(user_id: int) -> int:
        return user_id

    assert send(4) == 4
    rid = send.using(client).enqueue(7)
    row = conn.execute(
        "SELECT task_path, queue_name, priority, spec_json FROM task_runs WHERE result_id = %s",
        (rid,),
    ).fetchone()
    assert row is not None
    assert row["task_path"] == send.path == "app.tasks.send"
    assert (row["queue_name"], row["priority"]) == ("high", 3)
    assert row["spec_json"]["args"] == [7]


def test_a_task_argument_named_client_belongs_to_the_task(client: Client, conn: Conn) -> None:
    @task(name="app.tasks.invoice")
    def invoice(amount: int, client: str) -> str:
        return f"{client}: {amount}"

    rid = invoice.using(client).enqueue(10, client="ACME")
    other = invoice.options(queue="billing").using(client).enqueue(11, client="Initech")
    rows = conn.execute(
        "SELECT result_id, queue_name, spec_json FROM task_runs ORDER BY result_id"
    ).fetchall()
    assert [(r["result_id"], r["queue_name"]) for r in rows] == [
        (rid, "default"),
        (other, "billing"),
    ]
    assert rows[0]["spec_json"]["args"] == [10]
    assert rows[0]["spec_json"]["kwargs"] == {"client": "ACME"}
    assert rows[1]["spec_json"]["kwargs"] == {"client": "Initech"}


def test_chain_rows_wait_on_their_parent(client: Client, conn: Conn) -> None:
    steps = [Signature(task_path="app.tasks.step", args=(i,)) for i in range(3)]
    wf = client.chain(steps)
    rows = conn.execute(
        "SELECT result_id, status, parent_id, wait_count, workflow_id FROM task_runs "
        "ORDER BY result_id"
    ).fetchall()
    assert [r["status"] for r in rows] == ["READY", "WAITING", "WAITING"]
    assert [r["parent_id"] for r in rows] == [None, wf.result_ids[0], wf.result_ids[1]]
    assert [r["wait_count"] for r in rows] == [0, 1, 1]
    assert {r["workflow_id"] for r in rows} == {wf.workflow_id}


def test_chord_callback_waits_for_every_member(client: Client, conn: Conn) -> None:
    ping = Signature(task_path="app.tasks.ping")
    wf = client.chord([ping, ping, ping], Signature(task_path="app.tasks.done"))
    assert wf.callback_id is not None and len(set(wf.result_ids)) == 3
    callback = conn.execute(
        "SELECT status, wait_count FROM task_runs WHERE result_id = %s", (wf.callback_id,)
    ).fetchone()
    assert callback == {"status": "WAITING", "wait_count": 3}
    run = conn.execute(
        "SELECT expected_count, callback_result_id, status FROM workflow_runs "
        "WHERE workflow_id = %s",
        (wf.workflow_id,),
    ).fetchone()
    assert run == {"expected_count": 3, "callback_result_id": wf.callback_id, "status": "RUNNING"}


def test_group_is_recorded_without_a_callback(client: Client, conn: Conn) -> None:
    wf = client.group([Signature(task_path="app.tasks.ping", args=(i,)) for i in range(2)])
    run = conn.execute(
        "SELECT expected_count, callback_result_id FROM workflow_runs WHERE workflow_id = %s",
        (wf.workflow_id,),
    ).fetchone()
    assert run == {"expected_count": 2, "callback_result_id": None}


def test_dead_database_is_a_clear_error() -> None:
    from reproq.errors import DatabaseError

    with (
        Client("postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=1") as c,
        pytest.raises(DatabaseError, match="cannot connect"),
    ):
        c.enqueue("app.tasks.x")


def test_task_decorator_refuses_functions_workers_cannot_import() -> None:
    with pytest.raises(InvalidSpec, match="define tasks at module level"):

        @task
        def nested() -> None:
            return None
