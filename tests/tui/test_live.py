"""Staying current: the refresh planner, LISTEN-driven refresh, polling, freeze, down/up."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict
from textual.pilot import Pilot

from reproq.clock import FakeClock
from reproq.db import connect
from reproq.errors import DatabaseError
from reproq.pg.throwaway import ServerInfo
from reproq.tui.live import LinkState, ListenEvent, RefreshPlanner, listen_loop
from reproq.tui.screens.tasks import TasksScreen
from reproq.tui.source import PostgresSource
from tests.tui.conftest import T0, Seeder, drive, make_app, notices, text_of, wait_for

# --------------------------------------------------------------------------- planner


def state(planner: RefreshPlanner) -> LinkState:
    """The planner's state, read afresh (a function, so type narrowing cannot stick)."""
    return planner.state


def test_planner_refreshes_first_then_polls_every_interval() -> None:
    clock = FakeClock(T0)
    p = RefreshPlanner(poll_interval=2.0)
    assert p.due(clock.now()) and state(p) is LinkState.CONNECTING
    p.started(clock.now())
    assert not p.due(clock.now())  # in flight: never two at once
    p.finished(clock.now(), ok=True)
    assert state(p) is LinkState.POLLING
    assert p.delay(clock.now()) == 2.0
    clock.advance(1.9)
    assert not p.due(clock.now())
    clock.advance(0.1)
    assert p.due(clock.now())


def test_planner_debounces_notifications_and_sweeps_slowly_when_live() -> None:
    clock = FakeClock(T0)
    p = RefreshPlanner(debounce=0.3, live_interval=5.0, min_gap=0.5)
    p.listener_event(ListenEvent.UP, clock.now())
    p.started(clock.now())
    p.finished(clock.now(), ok=True)
    assert state(p) is LinkState.LIVE
    assert p.delay(clock.now()) == 5.0
    clock.advance(1.0)
    p.listener_event(ListenEvent.CHANGED, clock.now())
    clock.advance(0.1)
    p.listener_event(ListenEvent.CHANGED, clock.now())  # same burst
    assert p.delay(clock.now()) == pytest.approx(0.2)  # from the first notification
    clock.advance(0.2)
    assert p.due(clock.now())


def test_planner_keeps_a_minimum_gap_under_a_notification_storm() -> None:
    clock = FakeClock(T0)
    p = RefreshPlanner(debounce=0.0, min_gap=0.5)
    p.listener_event(ListenEvent.UP, clock.now())
    p.started(clock.now())
    p.finished(clock.now(), ok=True)
    p.listener_event(ListenEvent.CHANGED, clock.now())
    assert p.delay(clock.now()) == 0.5


def test_planner_frozen_never_refreshes_unless_the_user_asks() -> None:
    clock = FakeClock(T0)
    p = RefreshPlanner()
    p.started(clock.now())
    p.finished(clock.now(), ok=True)
    p.frozen = True
    assert state(p) is LinkState.PAUSED
    clock.advance(3600)
    p.mark_stale(clock.now())
    assert p.delay(clock.now()) is None
    p.mark_stale(clock.now(), immediate=True)
    assert p.due(clock.now())


def test_planner_retries_a_down_database_and_comes_back() -> None:
    clock = FakeClock(T0)
    p = RefreshPlanner(down_retry=2.0)
    p.started(clock.now())
    p.finished(clock.now(), ok=False, down=True)
    assert state(p) is LinkState.DOWN
    assert p.delay(clock.now()) == 2.0
    clock.advance(2.0)
    p.started(clock.now())
    p.finished(clock.now(), ok=True)
    assert state(p) is LinkState.POLLING


def test_planner_does_not_wait_for_a_clock_that_stepped_back() -> None:
    clock = FakeClock(T0)
    p = RefreshPlanner()
    p.started(clock.now())
    p.finished(clock.now(), ok=True)
    clock.set(T0 - dt.timedelta(hours=1))
    assert p.due(clock.now())


class _Script:
    """A listener that yields scripted results, then stops the loop."""

    def __init__(self, results: list[list[str] | Exception], stop: threading.Event) -> None:
        self.results = results
        self.stop = stop
        self.closed = 0

    def wait(self, timeout: float) -> list[str]:
        if not self.results:
            self.stop.set()
            return []
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    def close(self) -> None:
        self.closed += 1


def test_listen_loop_reports_changes_and_reconnects_after_a_loss() -> None:
    stop = threading.Event()
    first = _Script([["emails"], [], DatabaseError("gone")], stop)
    second = _Script([["default"]], stop)
    opened: list[_Script | Exception] = [first, DatabaseError("refused"), second]

    def open_listener() -> _Script:
        item = opened.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    events: list[ListenEvent] = []
    listen_loop(open_listener, stop, events.append, retry_seconds=0)
    E = ListenEvent
    assert events == [E.UP, E.CHANGED, E.LOST, E.LOST, E.UP, E.CHANGED]
    assert first.closed == second.closed == 1


def test_listen_loop_without_notifications_reports_unsupported_once() -> None:
    events: list[ListenEvent] = []
    listen_loop(lambda: None, threading.Event(), events.append)
    assert events == [ListenEvent.UNSUPPORTED]


# --------------------------------------------------------------------------- the app


def test_a_notification_refreshes_the_screen_without_polling(
    source: PostgresSource, seed: Seeder
) -> None:
    # The sweep is an hour away: only the LISTEN connection can bring the new row in.
    planner = RefreshPlanner(debounce=0.05, live_interval=3600, min_gap=0.05)
    app = make_app(source, planner=planner, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = app.screen
        assert isinstance(screen, TasksScreen)
        await wait_for(pilot, lambda: app.planner.state is LinkState.LIVE, "live")
        await wait_for(pilot, lambda: app.refreshes >= 1 and not planner.in_flight, "a refresh")
        await pilot.pause(0.3)  # let the refresh after LISTEN's UP settle
        rid = seed.task()
        await wait_for(pilot, lambda: rid in screen.rows, "the notified row", timeout=5)

    drive(app, scenario)


def test_without_notifications_the_app_polls(dsn: str, seed: Seeder) -> None:
    source = PostgresSource(dsn, notifications=False)
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = app.screen
        assert isinstance(screen, TasksScreen)
        await wait_for(pilot, lambda: app.planner.state is LinkState.POLLING, "polling")
        rid = seed.task()
        await wait_for(pilot, lambda: rid in screen.rows, "the polled row")

    try:
        drive(app, scenario)
    finally:
        source.close()


def test_freeze_stops_refresh_until_resumed(source: PostgresSource, seed: Seeder) -> None:
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = app.screen
        assert isinstance(screen, TasksScreen)
        await wait_for(pilot, lambda: app.refreshes >= 1, "a refresh")
        await pilot.press("f")
        assert app.planner.state is LinkState.PAUSED
        await wait_for(pilot, lambda: not app.planner.in_flight, "the last refresh")
        count = app.refreshes
        rid = seed.task()
        await pilot.pause(1.2)  # several poll intervals
        assert app.refreshes == count
        assert rid not in screen.rows
        await pilot.press("f")
        await wait_for(pilot, lambda: rid in screen.rows, "the row after resuming")

    drive(app, scenario)


def test_a_database_that_goes_away_shows_down_and_recovers(
    pg_server: ServerInfo, dsn: str, source: PostgresSource, seed: Seeder
) -> None:
    name = conninfo_to_dict(dsn)["dbname"]
    app = make_app(source)
    admin = connect(pg_server.dsn)

    def allow(on: bool) -> None:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if on else "false"}')
        if not on:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )

    async def scenario(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: app.planner.state is LinkState.LIVE, "live")
        allow(False)
        await wait_for(pilot, lambda: app.planner.state is LinkState.DOWN, "down")
        assert app.last_error
        assert text_of(pilot, "#ov-system").startswith("database down")
        assert app.is_running
        allow(True)
        await wait_for(pilot, lambda: app.planner.state is LinkState.LIVE, "live again")
        assert "the database answers again" in notices(app)

    try:
        drive(app, scenario)
    finally:
        allow(True)
        admin.close()
