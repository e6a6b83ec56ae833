"""Keys live in one table: the footer, the help screen and the command palette agree."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import Input

from reproq.clock import FakeClock
from reproq.tui.app import ReproqApp
from reproq.tui.bindings import APP_KEYS, SCREEN_KEYS, SCREEN_TITLES, keys_for
from reproq.tui.demo_source import DemoSource
from reproq.tui.screens.base import DataScreen
from reproq.tui.screens.confirm import ConfirmScreen
from reproq.tui.screens.help import HelpScreen
from reproq.tui.screens.queues import QueuesScreen
from reproq.tui.screens.task_detail import TaskDetailScreen
from reproq.tui.screens.tasks import TasksScreen
from reproq.tui.widgets.keyed_table import KeyedTable
from tests.tui.conftest import T0, drive, render_text, wait_for

SCREENS: dict[str, type[Any]] = {
    **{name: cls for name, cls in ReproqApp.MODES.items() if isinstance(cls, type)},
    "task_detail": TaskDetailScreen,
    "confirm": ConfirmScreen,
    "help": HelpScreen,
}


def _is_mode(app: ReproqApp, name: str) -> bool:
    return app.current_mode == name


def _demo_app(start: str = "overview") -> ReproqApp:
    clock = FakeClock(T0)
    return ReproqApp(DemoSource(clock), clock=clock, start=start)


@pytest.mark.parametrize("scope", sorted(SCREEN_KEYS))
def test_each_screen_takes_its_bindings_from_the_table_and_has_every_action(scope: str) -> None:
    cls = SCREENS[scope]
    assert [b.key for b in cls.BINDINGS] == [k.key for k in keys_for(scope)]
    for key in keys_for(scope):
        name = key.action.split("(")[0]
        assert callable(getattr(cls, f"action_{name}", None)), f"{scope}: {key.action}"


def test_app_keys_have_actions_and_screens_are_all_reachable() -> None:
    for key in APP_KEYS:
        name = key.action.removeprefix("app.").split("(")[0]
        assert callable(getattr(ReproqApp, f"action_{name}", None)), key.action
    shown = {k.action for k in APP_KEYS}
    for name in SCREEN_TITLES:
        assert f"app.show('{name}')" in shown


def test_footer_help_and_palette_agree_on_every_screen() -> None:
    app = _demo_app()

    async def scenario(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: app.refreshes >= 1, "data")
        for number, name in enumerate(SCREEN_TITLES, start=1):
            await pilot.press(str(number))
            await wait_for(pilot, partial(_is_mode, app, name), name)
            screen = app.screen
            assert isinstance(screen, DataScreen)
            table = {(k.key, k.action): k for k in (*keys_for(name), *APP_KEYS)}
            # The footer shows only keys of the table (plus Textual's palette key).
            for pressed, active in screen.active_bindings.items():
                if active.binding.show and pressed != app.COMMAND_PALETTE_BINDING:
                    assert (pressed, active.binding.action) in table, (name, pressed)
            # The palette offers every enabled screen action, described as in the table.
            commands = {c.title: c.help for c in app.get_system_commands(screen)}
            for key in keys_for(name):
                if key.palette and screen.check_action(key.action, ()):
                    title = f"{key.label} ({SCREEN_TITLES[name]})"
                    assert commands.get(title) == key.help, (name, title)
            for title in SCREEN_TITLES.values():
                assert f"Go to {title}" in commands

    drive(app, scenario)


def test_help_screen_lists_every_binding() -> None:
    app = _demo_app()

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = render_text(pilot, app.screen.query_one("#help-keys").content)  # type: ignore[attr-defined]
        for scope in ("app", *SCREEN_KEYS):
            for key in keys_for(scope):
                assert " ".join(key.help.split()[:4]) in " ".join(text.split()), key.help
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

    drive(app, scenario, size=(120, 60))


def test_palette_switches_screens_and_hides_disabled_actions() -> None:
    app = _demo_app("tasks")

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = app.screen
        assert isinstance(screen, TasksScreen)
        await wait_for(pilot, lambda: screen.rows, "rows")
        ready = next(r for r in screen.rows.values() if r.status == "READY")
        screen.query_one("#tasks", KeyedTable).move_to(str(ready.result_id))
        await pilot.pause(0.05)
        titles = {c.title for c in app.get_system_commands(screen)}
        assert "Retry (Tasks)" not in titles  # READY: retry is not possible
        assert "Cancel (Tasks)" in titles
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        app.screen.query_one(Input).value = "Go to Queues"
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, QueuesScreen), "the queues")

    drive(app, scenario)
