"""The database link of a worker lane and the beat: reopened when lost, backing off on trouble."""

from __future__ import annotations

import logging
import time

import psycopg
import pytest
from psycopg import sql

from reproq.db import Conn, connect
from reproq.engine.link import BACKOFF_MAX, BACKOFF_MIN, Link
from reproq.pg.throwaway import ServerInfo
from tests.integration.worker_harness import running

log = logging.getLogger("tests.link")


def _link(dsn: str) -> Link:
    return Link(lambda: connect(dsn, application_name="link-test"), name="test link", log=log)


def test_a_killed_connection_is_dropped_and_reopened_with_a_log_line(
    dsn: str, conn: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    link = _link(dsn)
    first = link.get()
    assert link.get() is first  # kept while it works
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        ("link-test",),
    )
    with pytest.raises(psycopg.OperationalError) as failed:
        first.execute("SELECT 1")
    link.trouble(failed.value)
    assert link.conn is None and first.closed
    with caplog.at_level(logging.INFO, logger="tests.link"):
        second = link.get()
    assert second is not first and second.execute("SELECT 1").fetchone() is not None
    assert "test link reconnected to the database" in caplog.text
    link.drop()


def test_the_backoff_doubles_up_to_its_cap_and_resets_on_success(dsn: str) -> None:
    link = _link(dsn)
    waits = [link.trouble(psycopg.OperationalError("down")) for _ in range(7)]
    assert waits[0] == BACKOFF_MIN
    assert waits == sorted(waits) and waits[-1] == BACKOFF_MAX
    assert link.down_since is not None
    link.ok()
    assert link.down_since is None
    assert link.trouble(psycopg.OperationalError("down again")) == BACKOFF_MIN


def test_a_refused_statement_keeps_a_healthy_connection(dsn: str) -> None:
    link = _link(dsn)
    healthy = link.get()
    with pytest.raises(psycopg.errors.UndefinedTable) as refused:
        healthy.execute("SELECT * FROM no_such_table")
    assert not link.transient(refused.value)
    link.trouble(refused.value)
    assert link.conn is healthy
    link.drop()


def test_a_worker_whose_database_refuses_it_sleeps_through_the_backoff(
    pg_server: ServerInfo, dsn: str, conn: Conn
) -> None:
    """Polls, heartbeats and reclaims that fall due while the link backs off wait for the
    retry: the control loop does not wake again and again in between."""
    found = conn.execute("SELECT current_database() AS db").fetchone()
    assert found is not None
    database = sql.Identifier(found["db"])
    admin = connect(pg_server.dsn)
    with running(dsn) as worker:
        lane = worker.lanes[0]
        waits = 0
        plain_wait = lane._wake.wait

        def counted(timeout: float | None = None) -> bool:
            nonlocal waits
            waits += 1
            return plain_wait(timeout)

        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(database))
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name LIKE 'reproq-%%'",
                (found["db"],),
            )
            lane._wake.wait = counted  # type: ignore[method-assign]
            time.sleep(3.0)
            lane._wake.wait = plain_wait  # type: ignore[method-assign]
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(database))
            admin.close()
    # Three seconds of backoff (0.2 s doubling to 5 s): a handful of retries, each with a
    # wake or two around it; a loop that spins wakes thousands of times.
    assert 0 < waits < 60
