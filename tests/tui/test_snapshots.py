"""SVG snapshots of the main screens at 80x24, on demo data with a fixed clock.

Update after an intended change with ``pytest tests/tui/test_snapshots.py
--snapshot-update`` and review the SVG files in ``__snapshots__``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from textual.pilot import Pilot

from reproq.clock import FakeClock
from reproq.tui.app import ReproqApp
from reproq.tui.demo_source import DemoSource
from reproq.tui.screens.task_detail import TaskDetailScreen
from reproq.tui.screens.tasks import TasksScreen
from reproq.tui.widgets.keyed_table import KeyedTable
from tests.tui.conftest import T0, wait_for

SnapCompare = Callable[..., bool]


def _app(start: str = "overview") -> ReproqApp:
    clock = FakeClock(T0)
    return ReproqApp(DemoSource(clock), clock=clock, start=start)


def _loaded(then: Callable[[Pilot[Any]], Awaitable[None]] | None = None) -> Any:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, ReproqApp)
        await wait_for(pilot, lambda: app.refreshes >= 1, "the first refresh")
        if then is not None:
            await then(pilot)
        await pilot.pause()

    return run_before


def test_overview_snapshot(snap_compare: SnapCompare) -> None:
    assert snap_compare(_app(), terminal_size=(80, 24), run_before=_loaded())


def test_queues_snapshot(snap_compare: SnapCompare) -> None:
    assert snap_compare(_app("queues"), terminal_size=(80, 24), run_before=_loaded())


def test_tasks_snapshot_with_filter_and_selection(snap_compare: SnapCompare) -> None:
    async def filter_and_select(pilot: Pilot[Any]) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, TasksScreen)
        count = pilot.app.refreshes  # type: ignore[attr-defined]
        screen.set_filter("status:failed,ready")
        await wait_for(pilot, lambda: pilot.app.refreshes > count, "the filtered rows")  # type: ignore[attr-defined]
        await pilot.press("space", "space", "down")

    assert snap_compare(
        _app("tasks"), terminal_size=(80, 24), run_before=_loaded(filter_and_select)
    )


def test_task_detail_snapshot(snap_compare: SnapCompare) -> None:
    async def open_failed(pilot: Pilot[Any]) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, TasksScreen)
        failed = min(r.result_id for r in screen.rows.values() if r.status == "FAILED")
        screen.query_one("#tasks", KeyedTable).move_to(str(failed))
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, TaskDetailScreen)
                and pilot.app.screen.detail is not None
            ),
            "the detail",
        )

    assert snap_compare(_app("tasks"), terminal_size=(80, 24), run_before=_loaded(open_failed))


def test_workers_snapshot(snap_compare: SnapCompare) -> None:
    assert snap_compare(_app("workers"), terminal_size=(80, 24), run_before=_loaded())


def test_schedules_snapshot(snap_compare: SnapCompare) -> None:
    assert snap_compare(_app("schedules"), terminal_size=(80, 24), run_before=_loaded())


def test_retry_confirmation_snapshot(snap_compare: SnapCompare) -> None:
    async def ask(pilot: Pilot[Any]) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, TasksScreen)
        failed = max(r.result_id for r in screen.rows.values() if r.status == "FAILED")
        screen.query_one("#tasks", KeyedTable).move_to(str(failed))
        await pilot.press("r")

    assert snap_compare(_app("tasks"), terminal_size=(80, 24), run_before=_loaded(ask))
