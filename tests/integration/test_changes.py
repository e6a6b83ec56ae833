"""Change notifications: a ChangeFeed hears rows becoming READY, from any writer."""

from __future__ import annotations

import time

import pytest

from reproq.db import Conn
from reproq.errors import DatabaseError
from reproq.ops.change_feed import ChangeFeed
from reproq.producer.client import Client


def test_feed_reports_the_queues_of_new_ready_rows(dsn: str) -> None:
    with ChangeFeed(dsn) as feed, Client(dsn) as client:
        assert feed.wait(0.05) == []
        client.enqueue("app.jobs.a", [1], queue="emails")
        client.enqueue("app.jobs.a", [2], queue="reports")
        heard: list[str] = []
        deadline = time.monotonic() + 5
        while set(heard) != {"emails", "reports"} and time.monotonic() < deadline:
            heard += feed.wait(1.0)
        assert set(heard) == {"emails", "reports"}


def test_feed_raises_when_its_connection_is_killed(dsn: str, conn: Conn) -> None:
    with ChangeFeed(dsn, application_name="reproq-test-feed") as feed:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'reproq-test-feed'"
        )
        with pytest.raises(DatabaseError, match="change notifications lost"):
            for _ in range(20):
                feed.wait(0.2)
