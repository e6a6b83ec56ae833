"""Overview, Queues, Task detail, Workers and Schedules against a real database."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, Sparkline, Static

from reproq.tui.screens.confirm import ConfirmScreen
from reproq.tui.screens.overview import OverviewScreen
from reproq.tui.screens.queues import QueuesScreen
from reproq.tui.screens.schedules import SchedulesScreen
from reproq.tui.screens.task_detail import TaskDetailScreen
from reproq.tui.screens.tasks import TasksScreen
from reproq.tui.screens.workers import WorkersScreen
from reproq.tui.source import PostgresSource
from reproq.tui.widgets.keyed_table import KeyedTable
from tests.tui.conftest import (
    Seeder,
    actions_done,
    cell_text,
    drive,
    make_app,
    notices,
    render_text,
    text_of,
    wait_for,
)


def test_overview_shows_counts_workers_paused_queues_and_failures(
    source: PostgresSource, seed: Seeder
) -> None:
    for _ in range(3):
        seed.task(queue="emails")
    seed.failed("billing.charge")
    seed.failed("billing.charge")
    seed.succeeded()
    seed.worker("w-alive", queues=["default"])
    seed.worker("w-gone", queues=["default"], seen_ago=3600)
    seed.schedule("nightly")
    seed.conn.execute(
        "INSERT INTO reproq_queue_controls (queue_name, paused, paused_at, reason, created_at,"
        " updated_at) VALUES ('emails', true, now(), 'smtp outage', now(), now())"
    )
    app = make_app(source)

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = app.screen
        assert isinstance(screen, OverviewScreen)
        await wait_for(pilot, lambda: app.refreshes >= 1, "the first refresh")
        counts = text_of(pilot, "#ov-counts")
        assert "READY" in counts and " 3" in counts
        assert "FAILED" in counts and " 2" in counts
        system = text_of(pilot, "#ov-system")
        assert "1 alive, 1 stale" in system
        assert "nightly in" in system
        assert "paused   1: emails (smtp outage)" in system
        failing = screen.query_one("#ov-failing", KeyedTable)
        assert failing.keys == ["billing.charge"]
        assert sum(screen.query_one("#spark-done", Sparkline).data or []) == 1
        assert sum(screen.query_one("#spark-failed", Sparkline).data or []) == 2
        # Enter jumps to the FAILED runs of that task.
        failing.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TasksScreen), "the task list")
        tasks = app.screen
        assert isinstance(tasks, TasksScreen)
        assert tasks.filter_text == "status:failed task:billing.charge"
        await wait_for(pilot, lambda: len(tasks.rows) == 2, "the two failed runs")

    drive(app, scenario)


def test_queues_pause_with_reason_and_resume(source: PostgresSource, seed: Seeder) -> None:
    seed.task(queue="emails")
    seed.task(queue="reports")
    app = make_app(source, start="queues")

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = app.screen
        assert isinstance(screen, QueuesScreen)
        table = screen.query_one("#queues", KeyedTable)
        await wait_for(pilot, lambda: table.keys == ["emails", "reports"], "the queues")
        table.move_to("emails")
        await pilot.pause(0.05)
        assert screen.check_action("resume", ()) is None  # not paused: greyed
        assert screen.check_action("pause", ()) is True
        await pilot.press("p")
        assert isinstance(app.screen, ConfirmScreen)
        app.screen.query_one(Input).value = "smtp outage"
        await pilot.press("enter")
        await actions_done(pilot, app)
        row = seed.conn.execute(
            "SELECT paused, reason FROM reproq_queue_controls WHERE queue_name = 'emails'"
        ).fetchone()
        assert row == {"paused": True, "reason": "smtp outage"}
        assert "paused queue emails: smtp outage" in notices(app)
        await wait_for(pilot, lambda: cell_text(table, "emails", -1) == "paused", "paused")
        assert "smtp outage" in text_of(pilot, "#queue-detail")
        assert screen.check_action("pause", ()) is None
        await pilot.press("u")  # resume needs no confirmation
        await actions_done(pilot, app)
        row = seed.conn.execute(
            "SELECT paused FROM reproq_queue_controls WHERE queue_name = 'emails'"
        ).fetchone()
        assert row == {"paused": False}
        await wait_for(pilot, lambda: cell_text(table, "emails", -1) == "active", "active")

    drive(app, scenario)


def test_queue_enter_lists_its_tasks(source: PostgresSource, seed: Seeder) -> None:
    mine = seed.task(queue="emails")
    seed.task(queue="reports")
    app = make_app(source, start="queues")

    async def scenario(pilot: Pilot[Any]) -> None:
        table = app.screen.query_one("#queues", KeyedTable)
        await wait_for(pilot, lambda: table.keys, "the queues")
        table.move_to("emails")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TasksScreen), "the task list")
        tasks = app.screen
        assert isinstance(tasks, TasksScreen)
        await wait_for(pilot, lambda: list(tasks.rows) == [mine], "the emails run only")

    drive(app, scenario)


def test_task_detail_shows_spec_errors_lineage_and_acts(
    source: PostgresSource, seed: Seeder
) -> None:
    failed = seed.failed("billing.charge", args=["cus_42"], kwargs={"amount": 1200})
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        tasks = app.screen
        assert isinstance(tasks, TasksScreen)
        await wait_for(pilot, lambda: tasks.rows, "rows")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TaskDetailScreen), "the detail")
        detail = app.screen
        assert isinstance(detail, TaskDetailScreen)
        await wait_for(pilot, lambda: detail.detail is not None, "the run")
        body = detail.query_one("#detail", Static).content
        title = text_of(pilot, "#detail-title")
        assert f"#{failed} billing.charge" in title and "FAILED" in title
        text = render_text(pilot, body)
        assert '"cus_42"' in text and '"amount": 1200' in text
        assert "CardDeclined: card declined" in text
        assert 'File "pay.py", line 9' in text  # the traceback
        assert "none (enqueued on its own)" in text
        assert detail.check_action("cancel", ()) is None  # FAILED: nothing to cancel
        await pilot.press("r", "y")
        await actions_done(pilot, app)
        assert seed.status(failed) == "READY"
        await wait_for(pilot, lambda: "READY" in text_of(pilot, "#detail-title"), "READY title")
        await pilot.press("escape")
        assert isinstance(app.screen, TasksScreen)

    drive(app, scenario)


def test_replayed_run_links_back_to_its_source(source: PostgresSource, seed: Seeder) -> None:
    done = seed.succeeded("reports.build")
    app = make_app(source, start="tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        tasks = app.screen
        assert isinstance(tasks, TasksScreen)
        await wait_for(pilot, lambda: tasks.rows, "rows")
        await pilot.press("R", "y")
        await actions_done(pilot, app)
        await wait_for(pilot, lambda: len(tasks.rows) == 2, "the replay")
        newest = max(tasks.rows)
        tasks.query_one("#tasks", KeyedTable).move_to(str(newest))
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.detail is not None,
            "the detail",
        )
        body = app.screen.query_one("#detail", Static).content
        assert f"replay of #{done}" in render_text(pilot, body)
        await pilot.press("o")  # open the source
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, TaskDetailScreen) and app.screen.result_id == done,
            "the source run",
        )

    drive(app, scenario)


def test_workers_screen_marks_stale_workers(source: PostgresSource, seed: Seeder) -> None:
    seed.worker("w-alive", queues=["default", "emails"])
    seed.worker("w-gone", queues=["default"], seen_ago=3600)
    running = seed.running(worker="w-alive")
    app = make_app(source, start="workers")

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = app.screen
        assert isinstance(screen, WorkersScreen)
        table = screen.query_one("#workers", KeyedTable)
        await wait_for(pilot, lambda: table.keys == ["w-alive", "w-gone"], "the workers")
        assert cell_text(table, "w-gone", -1).startswith("stale")
        assert not cell_text(table, "w-alive", -1).startswith("stale")
        assert cell_text(table, "w-alive", 4) == "1"  # running
        assert cell_text(table, "w-alive", 2) == "default,emails"
        table.move_to("w-gone")
        await pilot.pause(0.05)
        assert "no heartbeat" in text_of(pilot, "#worker-detail")
        table.move_to("w-alive")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TasksScreen), "the task list")
        tasks = app.screen
        assert isinstance(tasks, TasksScreen)
        await wait_for(pilot, lambda: list(tasks.rows) == [running], "its running task")

    drive(app, scenario)


def test_schedules_run_now_disable_and_enable(source: PostgresSource, seed: Seeder) -> None:
    seed.schedule("nightly")
    seed.schedule("weekly", enabled=False)
    app = make_app(source, start="schedules")

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = app.screen
        assert isinstance(screen, SchedulesScreen)
        table = screen.query_one("#schedules", KeyedTable)
        await wait_for(pilot, lambda: table.keys == ["nightly", "weekly"], "the schedules")
        table.move_to("nightly")
        await pilot.pause(0.05)
        assert screen.check_action("enable", ()) is None
        await pilot.press("n", "y")
        await actions_done(pilot, app)
        run = seed.conn.execute("SELECT result_id, task_path, spec_json FROM task_runs").fetchall()
        assert len(run) == 1 and run[0]["task_path"] == "app.jobs.report"
        assert run[0]["spec_json"]["kwargs"] == {"full": True}
        assert f"enqueued run #{run[0]['result_id']} of nightly" in notices(app)
        await pilot.press("d", "y")
        await actions_done(pilot, app)
        enabled = seed.conn.execute(
            "SELECT name, enabled FROM periodic_tasks ORDER BY name"
        ).fetchall()
        assert [r["enabled"] for r in enabled] == [False, False]
        await wait_for(pilot, lambda: cell_text(table, "nightly", 4) == "off", "off")
        table.move_to("weekly")
        await pilot.press("e")  # enabling needs no confirmation
        await actions_done(pilot, app)
        row = seed.conn.execute(
            "SELECT enabled FROM periodic_tasks WHERE name = 'weekly'"
        ).fetchone()
        assert row == {"enabled": True}

    drive(app, scenario)
