"""Over-long lock and concurrency keys: refused at enqueue, and one such row written by
another client fails on its own instead of stopping the queue."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from reproq.cli import main
from reproq.db import Conn
from reproq.errors import InvalidSpec
from reproq.pg.migrations import available_migrations
from reproq.producer.client import Client
from reproq.producer.enqueue import NewTask, insert_tasks
from reproq.producer.signature import Signature
from reproq.producer.task import task
from reproq.spec import MAX_KEY_BYTES, build_spec
from tests.integration.sql_rows import insert_row
from tests.integration.worker_harness import errors, running, wait_all, wait_status

# Random hex does not compress: as an index entry it needs its full 9,000 bytes.
LONG_KEY = secrets.token_hex(4500)


@pytest.fixture
def client(dsn: str) -> Iterator[Client]:
    with Client(dsn) as c:
        yield c


@pytest.mark.parametrize("name", ["lock_key", "concurrency_key"])
def test_client_enqueue_refuses_a_key_over_the_limit_naming_it(client: Client, name: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        client.enqueue("app.tasks.sync", [1], **{name: LONG_KEY})
    message = str(caught.value)
    assert message.startswith(f"{name} '{LONG_KEY[:8]}")
    assert f"is 9000 bytes, over the {MAX_KEY_BYTES}-byte limit" in message


def test_a_key_at_the_limit_is_accepted_and_multibyte_keys_count_bytes(client: Client) -> None:
    assert client.enqueue("app.tasks.sync", [1], lock_key="k" * MAX_KEY_BYTES) > 0
    with pytest.raises(InvalidSpec, match=r"lock_key .* is 1026 bytes"):
        client.enqueue("app.tasks.sync", [2], lock_key="é" * 513)


def test_a_signature_with_a_long_key_is_refused_when_made() -> None:
    with pytest.raises(InvalidSpec, match="concurrency_key"):
        Signature(task_path="app.tasks.sync", concurrency_key=LONG_KEY)


def test_bulk_insert_of_a_spec_with_a_long_key_is_refused_and_writes_nothing(conn: Conn) -> None:
    rows = [NewTask.from_spec(build_spec("app.tasks.sync", [i])) for i in range(10)]
    rows.append(NewTask.from_spec(build_spec("app.tasks.sync", [10], concurrency_key=LONG_KEY)))
    with pytest.raises(InvalidSpec, match="concurrency_key"):
        insert_tasks(conn, rows)
    count = conn.execute("SELECT count(*) AS n FROM task_runs").fetchone()
    assert count is not None and count["n"] == 0


def test_task_options_with_a_long_key_are_refused_when_declared() -> None:
    with pytest.raises(InvalidSpec, match=rf"lock_key .* over the {MAX_KEY_BYTES}-byte limit"):

        @task(name="app.tasks.sync", lock_key=LONG_KEY)
        def sync() -> None: ...


def test_the_cli_refuses_a_long_key_with_one_line_and_exit_2(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["enqueue", "app.tasks.sync", "--lock-key", LONG_KEY, "--dsn", dsn])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert "lock_key" in err and f"over the {MAX_KEY_BYTES}-byte limit" in err
    count = conn.execute("SELECT count(*) AS n FROM task_runs").fetchone()
    assert count is not None and count["n"] == 0


def test_the_indexes_take_any_key_length(conn: Conn) -> None:
    """A row with a 9,000-byte key can become RUNNING: the key indexes cannot fail."""
    rid = insert_row(
        conn, "app.tasks.sync", lock_key=LONG_KEY, concurrency_key=LONG_KEY, concurrency_limit=1
    )
    conn.execute(
        "UPDATE task_runs SET status = 'RUNNING', leased_until = now() WHERE result_id = %s",
        (rid,),
    )
    found = conn.execute(
        "SELECT count(*) AS n FROM task_runs WHERE lock_key = %s AND status = 'RUNNING'",
        (LONG_KEY,),
    ).fetchone()
    assert found is not None and found["n"] == 1


@pytest.mark.parametrize(
    "keys",
    [
        {"lock_key": LONG_KEY},
        {"concurrency_key": LONG_KEY, "concurrency_limit": 2},
    ],
    ids=["lock_key", "concurrency_key"],
)
def test_one_row_with_a_long_key_fails_alone_and_the_queue_keeps_running(
    dsn: str, conn: Conn, keys: dict[str, object]
) -> None:
    bad = insert_row(conn, "tests.tasks.sample.add", [1, 1], **keys)  # type: ignore[arg-type]
    good = [insert_row(conn, "tests.tasks.sample.add", [i, 1]) for i in range(5)]
    keyed = insert_row(conn, "tests.tasks.sample.add", [9, 1], lock_key="short-key")
    with running(dsn):
        done = wait_status(conn, bad, "FAILED")
        wait_all(conn, [*good, keyed], "SUCCESSFUL")
    name = next(iter(keys))
    [entry] = errors(conn, bad)
    assert entry["kind"] == "invalid_spec"
    assert f"{name} '{LONG_KEY[:8]}" in entry["message"]
    assert f"is 9000 bytes, over the {MAX_KEY_BYTES}-byte limit" in entry["message"]
    assert done["attempts"] == 1


def test_the_migration_replaces_raw_key_indexes_of_upstream_installs(conn: Conn) -> None:
    """reproq-worker and reproq-django's schema command name the same raw-key indexes
    otherwise; after the migration no index on task_runs holds a raw key."""
    conn.execute(
        "CREATE INDEX idx_task_runs_lock_key ON task_runs (lock_key) WHERE status = 'RUNNING'"
    )
    conn.execute(
        "CREATE INDEX idx_task_runs_concurrency_active ON task_runs (concurrency_key, leased_until)"
        " WHERE status = 'RUNNING' AND concurrency_key IS NOT NULL"
    )
    [migration] = [m for m in available_migrations() if m.name == "key_hash_indexes"]
    with conn.transaction():
        conn.execute(migration.sql)
    definitions = [
        r["indexdef"]
        for r in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'task_runs'"
            " AND (indexdef LIKE '%lock_key%' OR indexdef LIKE '%concurrency_key%')"
        )
    ]
    assert len(definitions) == 2
    assert all("hashtext(" in d for d in definitions), definitions
