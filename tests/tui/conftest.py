"""Fixtures for the TUI tests: a seeded database, a fast-refreshing app, waiting helpers.

Pilot tests are plain functions that run their scenario with :func:`drive`, so no
asyncio plugin is needed. Rows are seeded through :class:`reproq.producer.client.Client` and then
moved into the state a test needs with plain SQL, as a worker would have left them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Static

from reproq.db import Conn
from reproq.producer.client import Client
from reproq.tui.app import ReproqApp
from reproq.tui.live import RefreshPlanner
from reproq.tui.source import DataSource, PostgresSource
from reproq.tui.widgets.keyed_table import KeyedTable

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
"""The fixed instant of deterministic (demo, snapshot) tests."""


def fast_planner() -> RefreshPlanner:
    """Refresh timings short enough for tests (the real ones are a few seconds)."""
    return RefreshPlanner(
        debounce=0.05, poll_interval=0.4, live_interval=0.8, min_gap=0.05, down_retry=0.3
    )


def make_app(source: DataSource, **kwargs: Any) -> ReproqApp:
    """The app with test timings."""
    kwargs.setdefault("planner", fast_planner())
    return ReproqApp(source, **kwargs)


def drive(app: ReproqApp, scenario: Callable[[Pilot[None]], Awaitable[None]], **kw: Any) -> None:
    """Run ``scenario`` against ``app`` headless at 80x24 (or ``size=``)."""

    async def main() -> None:
        async with app.run_test(size=kw.get("size", (80, 24))) as pilot:
            await scenario(pilot)

    asyncio.run(main())


async def wait_for(
    pilot: Pilot[Any], predicate: Callable[[], object], what: str, timeout: float = 10.0
) -> None:
    """Pump the app until ``predicate()`` holds (generous: the machine is small)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.03)


async def fresh(pilot: Pilot[Any], app: ReproqApp) -> None:
    """Wait until a refresh that started after now has been applied."""
    app.request_refresh()
    before = app.refreshes
    await wait_for(pilot, lambda: app.refreshes > before + 0, "a refresh")
    # The first refresh may have been in flight already; one more is certainly new.
    before = app.refreshes
    app.request_refresh()
    await wait_for(pilot, lambda: app.refreshes > before, "a second refresh")


async def actions_done(pilot: Pilot[Any], app: ReproqApp) -> None:
    """Wait until no operator action is running and the notification is out."""
    await pilot.pause(0.05)
    await wait_for(
        pilot,
        lambda: not [w for w in app.workers if w.group == "action" and w.is_running],
        "the action to finish",
    )
    await pilot.pause(0.05)


def render_text(pilot: Pilot[Any], renderable: Any) -> str:
    """Plain text of a Rich renderable as the app's console lays it out."""
    console = pilot.app.console
    with console.capture() as capture:
        console.print(renderable, width=200)
    return Text.from_ansi(capture.get()).plain


def text_of(pilot: Pilot[Any], selector: str) -> str:
    """The plain text a Static of the current screen shows."""
    return render_text(pilot, pilot.app.screen.query_one(selector, Static).content)


def cell_text(table: KeyedTable, row_key: str | int, column: int) -> str:
    """The plain text of one cell."""
    value = table.get_row(str(row_key))[column]
    return value.plain if isinstance(value, Text) else str(value)


def notices(app: ReproqApp) -> list[str]:
    """The texts of the notifications shown so far."""
    return [n.message for n in app._notifications]


@pytest.fixture
def client(dsn: str) -> Iterator[Client]:
    """A producer client on the test database."""
    with Client(dsn) as c:
        yield c


@pytest.fixture
def source(dsn: str) -> Iterator[PostgresSource]:
    """The real data source on the test database."""
    s = PostgresSource(dsn)
    try:
        yield s
    finally:
        s.close()


class Seeder:
    """Puts rows into the states the screens show."""

    def __init__(self, client: Client, conn: Conn) -> None:
        self.client = client
        self.conn = conn
        self._n = 0

    def task(self, task_path: str = "app.jobs.work", *, queue: str = "default", **kw: Any) -> int:
        """A READY run with unique arguments."""
        self._n += 1
        args = kw.pop("args", [self._n])
        return self.client.enqueue(task_path, args, queue=queue, **kw)

    def failed(self, task_path: str = "app.jobs.work", *, queue: str = "default", **kw: Any) -> int:
        """A FAILED run with one attempt's error and traceback."""
        rid = self.task(task_path, queue=queue, **kw)
        error = {
            "kind": "app_error",
            "message": "card declined",
            "exception_class": "CardDeclined",
            "traceback": 'Traceback (most recent call last):\n  File "pay.py", line 9\n'
            "CardDeclined: card declined\n",
            "attempt": 3,
            "at": "2026-11-27T11:59:00+00:00",
            "worker_id": "w-1",
        }
        self.conn.execute(
            "UPDATE task_runs SET status = 'FAILED', attempts = max_attempts,"
            " started_at = now() - interval '1 minute', finished_at = now(),"
            " failed_at = now(), last_error = 'CardDeclined: card declined',"
            " errors_json = %s::jsonb, worker_ids = '[\"w-1\"]'::jsonb WHERE result_id = %s",
            (json.dumps([error]), rid),
        )
        return rid

    def running(self, task_path: str = "app.jobs.work", *, worker: str = "w-1", **kw: Any) -> int:
        """A RUNNING run leased by ``worker``."""
        rid = self.task(task_path, **kw)
        self.conn.execute(
            "UPDATE task_runs SET status = 'RUNNING', attempts = 1, started_at = now(),"
            " leased_by = %s, leased_until = now() + interval '5 minutes',"
            " worker_ids = jsonb_build_array(%s::text) WHERE result_id = %s",
            (worker, worker, rid),
        )
        return rid

    def succeeded(self, task_path: str = "app.jobs.work", **kw: Any) -> int:
        """A SUCCESSFUL run with a return value."""
        rid = self.task(task_path, **kw)
        self.conn.execute(
            "UPDATE task_runs SET status = 'SUCCESSFUL', attempts = 1, started_at = now(),"
            " finished_at = now(), return_json = '{\"ok\": true}'::jsonb WHERE result_id = %s",
            (rid,),
        )
        return rid

    def worker(self, worker_id: str, *, queues: list[str], seen_ago: float = 1.0) -> None:
        """A registered worker last seen ``seen_ago`` seconds ago."""
        self.conn.execute(
            "INSERT INTO reproq_workers (worker_id, hostname, concurrency, queues, started_at,"
            " last_seen_at, version) VALUES (%s, 'host-a', 4, %s::jsonb,"
            " now() - interval '1 hour', now() - make_interval(secs => %s), '0.1.0')",
            (worker_id, json.dumps(queues), seen_ago),
        )

    def schedule(
        self, name: str, *, enabled: bool = True, task_path: str = "app.jobs.report"
    ) -> None:
        """A periodic task firing every five minutes."""
        self.conn.execute(
            "INSERT INTO periodic_tasks (name, cron_expr, task_path, payload_json, queue_name,"
            " priority, max_attempts, concurrency_key, concurrency_limit, last_run_at,"
            " next_run_at, enabled, created_at, updated_at) VALUES (%s, '*/5 * * * *', %s,"
            " '{\"kwargs\": {\"full\": true}}'::jsonb, 'default', 0, 3, NULL, 0, NULL,"
            " now() + interval '3 minutes', %s, now(), now())",
            (name, task_path, enabled),
        )

    def status(self, result_id: int) -> str:
        """The stored status of a run."""
        row = self.conn.execute(
            "SELECT status FROM task_runs WHERE result_id = %s", (result_id,)
        ).fetchone()
        assert row is not None
        return str(row["status"])

    def row(self, result_id: int) -> dict[str, Any]:
        """The stored row of a run."""
        row = self.conn.execute(
            "SELECT * FROM task_runs WHERE result_id = %s", (result_id,)
        ).fetchone()
        assert row is not None
        return dict(row)


@pytest.fixture
def seed(client: Client, conn: Conn) -> Seeder:
    """Seeds rows into the test database."""
    return Seeder(client, conn)
