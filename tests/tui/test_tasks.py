"""The Tasks screen against a real database: filter, select, retry, replay, cancel."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from reproq.tui.screens.confirm import ConfirmScreen
from reproq.tui.screens.tasks import TasksScreen
from reproq.tui.source import PostgresSource
from reproq.tui.widgets.keyed_table import KeyedTable
from tests.tui.conftest import (
    Seeder,
    actions_done,
    cell_text,
    drive,
    fresh,
    make_app,
    notices,
    wait_for,
)


def _table(pilot: Pilot[Any]) -> KeyedTable:
    return pilot.app.screen.query_one("#tasks", KeyedTable)


async def _open_tasks(pilot: Pilot[Any]) -> TasksScreen:
    screen = pilot.app.screen
    assert isinstance(screen, TasksScreen)
    await wait_for(pilot, lambda: screen.rows, "rows")
    return screen


async def _to_row(pilot: Pilot[Any], result_id: int) -> None:
    assert _table(pilot).move_to(str(result_id))
    await pilot.pause(0.05)


def test_rows_are_keyed_by_result_id_and_show_state(source: PostgresSource, seed: Seeder) -> None:
    ready = seed.task("app.mail.send", queue="emails")
    failed = seed.failed("billing.charge")
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = await _open_tasks(pilot)
        table = _table(pilot)
        assert table.keys == [str(failed), str(ready)]  # newest first
        assert cell_text(table, str(ready), 2) == "READY"
        assert cell_text(table, str(failed), 2) == "FAILED"
        assert screen.rows[ready].queue_name == "emails"

    drive(app, scenario)


def test_filter_language_narrows_the_rows(source: PostgresSource, seed: Seeder) -> None:
    seed.task("app.mail.send", queue="emails")
    keep = seed.failed("billing.charge", queue="payments")
    seed.failed("app.mail.send", queue="emails")
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        await _open_tasks(pilot)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        app.focused.value = "status:failed task:billing.*"
        await pilot.press("enter")
        await wait_for(pilot, lambda: _table(pilot).keys == [str(keep)], "the filtered rows")
        assert isinstance(app.focused, KeyedTable)
        assert app.screen.filter_text == "status:failed task:billing.*"

    drive(app, scenario)


def test_a_bad_filter_is_reported_and_the_old_one_kept(
    source: PostgresSource, seed: Seeder
) -> None:
    seed.task()
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = await _open_tasks(pilot)
        await pilot.press("slash", *"colour:", "enter")
        await pilot.pause(0.1)
        assert any("unknown filter field 'colour'" in m for m in notices(app))
        assert screen.filter_text == ""
        assert len(screen.rows) == 1

    drive(app, scenario)


def test_an_age_past_any_date_is_a_bad_filter_not_a_crash(
    source: PostgresSource, seed: Seeder
) -> None:
    seed.task()
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = await _open_tasks(pilot)
        await pilot.press("slash", *"age:>999999999999d", "enter")
        await pilot.pause(0.1)
        assert any("must be at most 365000d" in m for m in notices(app))
        assert screen.filter_text == ""
        assert len(screen.rows) == 1

    drive(app, scenario)


def test_retry_puts_a_failed_run_back_to_ready(source: PostgresSource, seed: Seeder) -> None:
    failed = seed.failed("billing.charge")
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        await _open_tasks(pilot)
        await _to_row(pilot, failed)
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await actions_done(pilot, app)
        assert seed.status(failed) == "READY"
        assert any(f"retried #{failed}" in m for m in notices(app))
        await wait_for(
            pilot, lambda: cell_text(_table(pilot), str(failed), 2) == "READY", "READY row"
        )

    drive(app, scenario)


def test_saying_no_changes_nothing(source: PostgresSource, seed: Seeder) -> None:
    failed = seed.failed()
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        await _open_tasks(pilot)
        await _to_row(pilot, failed)
        await pilot.press("r", "n")
        await pilot.pause(0.2)
        assert isinstance(app.screen, TasksScreen)
        assert seed.status(failed) == "FAILED"

    drive(app, scenario)


def test_retry_is_disabled_for_a_row_that_is_not_failed(
    source: PostgresSource, seed: Seeder
) -> None:
    ready = seed.task()
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = await _open_tasks(pilot)
        await _to_row(pilot, ready)
        # Greyed in the footer (check_action None), and the key explains itself.
        assert screen.check_action("retry", ()) is None
        assert not app.screen.active_bindings["r"].enabled
        await pilot.press("r")
        await pilot.pause(0.1)
        assert isinstance(app.screen, TasksScreen)  # no dialog
        assert any("only FAILED runs can be retried" in m for m in notices(app))
        assert seed.status(ready) == "READY"

    drive(app, scenario)


def test_replay_enqueues_a_new_run_from_the_spec(source: PostgresSource, seed: Seeder) -> None:
    done = seed.succeeded("reports.build")
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        await _open_tasks(pilot)
        await _to_row(pilot, done)
        await pilot.press("R", "y")
        await actions_done(pilot, app)
        new = seed.conn.execute(
            "SELECT result_id, status, metadata_json FROM task_runs WHERE result_id <> %s",
            (done,),
        ).fetchall()
        assert len(new) == 1
        assert new[0]["status"] == "READY"
        assert new[0]["metadata_json"]["replayed_from"] == done
        assert any(f"replayed #{done} as new run #{new[0]['result_id']}" in m for m in notices(app))
        await wait_for(pilot, lambda: str(new[0]["result_id"]) in _table(pilot).keys, "new row")

    drive(app, scenario)


def test_replay_blocked_by_an_active_duplicate_is_shown_not_raised(
    source: PostgresSource, seed: Seeder
) -> None:
    failed = seed.failed("billing.charge", args=["cus_1"])
    twin = seed.task("billing.charge", args=["cus_1"])  # same spec, READY
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        await _open_tasks(pilot)
        await _to_row(pilot, failed)
        await pilot.press("R", "y")
        await actions_done(pilot, app)
        assert any(f"already queued or running as result_id {twin}" in m for m in notices(app))
        count = seed.conn.execute("SELECT count(*) AS n FROM task_runs").fetchone()
        assert count is not None and count["n"] == 2
        assert app.is_running

    drive(app, scenario)


def test_cancel_ready_and_request_stop_of_running(source: PostgresSource, seed: Seeder) -> None:
    ready = seed.task()
    running = seed.running()
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        await _open_tasks(pilot)
        await _to_row(pilot, ready)
        await pilot.press("c", "y")
        await actions_done(pilot, app)
        assert seed.status(ready) == "CANCELLED"
        await _to_row(pilot, running)
        await pilot.press("c", "y")
        await actions_done(pilot, app)
        row = seed.row(running)
        assert row["status"] == "RUNNING" and row["cancel_requested"] is True
        assert any(f"asked the worker running #{running} to stop" in m for m in notices(app))
        await wait_for(
            pilot,
            lambda: cell_text(_table(pilot), str(running), 2) == "RUNNING!",
            "the stop-requested mark",
        )

    drive(app, scenario)


def test_bulk_retry_reports_what_it_skipped(source: PostgresSource, seed: Seeder) -> None:
    failed = [seed.failed() for _ in range(3)]
    ready = seed.task()
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = await _open_tasks(pilot)
        await pilot.press("a")  # select all four
        assert screen.selected == {*failed, ready}
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await actions_done(pilot, app)
        assert [seed.status(i) for i in failed] == ["READY"] * 3
        assert "retried 3, skipped 1 not FAILED" in notices(app)
        assert screen.selected == set()

    drive(app, scenario)


def test_bulk_cancel_of_a_selection(source: PostgresSource, seed: Seeder) -> None:
    first, second, done = seed.task(), seed.task(), seed.succeeded()
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = await _open_tasks(pilot)
        for rid in (first, second, done):
            await _to_row(pilot, rid)
            await pilot.press("space")
        assert screen.selected == {first, second, done}
        await pilot.press("c", "y")
        await actions_done(pilot, app)
        assert seed.status(first) == seed.status(second) == "CANCELLED"
        assert seed.status(done) == "SUCCESSFUL"
        assert "cancelled 2, skipped 1 already finished" in notices(app)

    drive(app, scenario)


def test_cursor_and_selection_survive_a_refresh(source: PostgresSource, seed: Seeder) -> None:
    ids = [seed.task() for _ in range(5)]
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = await _open_tasks(pilot)
        table = _table(pilot)
        await _to_row(pilot, ids[2])
        await pilot.press("space")  # selects ids[2], cursor moves to ids[1]
        assert table.cursor_key == str(ids[1])
        for _ in range(3):
            seed.task()  # new rows arrive above the cursor
        await fresh(pilot, app)
        assert len(table.keys) == 8
        assert table.cursor_key == str(ids[1])
        assert screen.selected == {ids[2]}
        assert cell_text(table, str(ids[2]), 0) == "●"

    drive(app, scenario)


def test_sorting_reorders_rows_and_oldest_reads_from_the_start(
    source: PostgresSource, seed: Seeder
) -> None:
    a = seed.failed("b.task")
    b = seed.task("a.task")
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = await _open_tasks(pilot)
        assert _table(pilot).keys == [str(b), str(a)]
        await pilot.press("s")  # oldest
        await wait_for(pilot, lambda: _table(pilot).keys == [str(a), str(b)], "oldest first")
        await pilot.press("s", "s", "s")  # status, queue, task
        assert screen.sort == "task"
        await wait_for(pilot, lambda: _table(pilot).keys == [str(b), str(a)], "by task path")

    drive(app, scenario)
