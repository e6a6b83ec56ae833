"""The ``reproq tui`` application: screens, live refresh and operator actions.

All I/O runs in thread workers: one refresh of the visible screen at a time (never
overlapping), operator actions through :mod:`reproq.ops.admin` via the data source, and a
LISTEN loop that marks data stale. The UI thread only decides and draws.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

from textual import events, on, work
from textual.app import App, SystemCommand
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from reproq.clock import Clock, SystemClock
from reproq.errors import ReproqError
from reproq.tui.bindings import APP_KEYS, SCREEN_TITLES, Key, bindings_for, keys_for
from reproq.tui.live import LinkState, ListenEvent, RefreshPlanner, listen_loop
from reproq.tui.screens.base import AppHost, DataScreen
from reproq.tui.screens.confirm import ConfirmScreen
from reproq.tui.screens.help import HelpScreen
from reproq.tui.screens.overview import OverviewScreen
from reproq.tui.screens.queues import QueuesScreen
from reproq.tui.screens.schedules import SchedulesScreen
from reproq.tui.screens.tasks import TasksScreen
from reproq.tui.screens.workers import WorkersScreen
from reproq.tui.source import ActionJob, DataSource, SourceUnavailable
from reproq.tui.widgets.top_bar import TopBar

__all__ = ["ReproqApp"]

Severity = Literal["information", "warning", "error"]


@dataclass(frozen=True, kw_only=True, slots=True)
class _Refreshed:
    screen: DataScreen[Any]
    data: Any = None
    error: str | None = None
    down: bool = False


class _Heard(Message):
    """What the LISTEN loop saw, posted from its thread."""

    def __init__(self, event: ListenEvent) -> None:
        super().__init__()
        self.event = event


@dataclass(frozen=True, kw_only=True, slots=True)
class _Done:
    message: str
    severity: Severity


class ReproqApp(App[None]):
    """Live monitoring and operator actions on one reproq database (or demo data)."""

    CSS_PATH = Path(__file__).with_name("reproq.tcss")
    TITLE = "reproq"
    BINDINGS: ClassVar = bindings_for("app")
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        "overview": OverviewScreen,
        "queues": QueuesScreen,
        "tasks": TasksScreen,
        "workers": WorkersScreen,
        "schedules": SchedulesScreen,
    }
    DEFAULT_MODE = "overview"

    def __init__(
        self,
        source: DataSource,
        *,
        clock: Clock | None = None,
        planner: RefreshPlanner | None = None,
        window: dt.timedelta = dt.timedelta(hours=1),
        start: str = "overview",
    ) -> None:
        if start not in self.MODES:
            raise ValueError(f"unknown screen {start!r} (known: {', '.join(self.MODES)})")
        # Read by App.__init__: the first screen is built straight away, no detour.
        self.DEFAULT_MODE = start  # type: ignore[misc]
        super().__init__()
        self.source = source
        self.clock: Clock = clock or SystemClock()
        self.planner = planner or RefreshPlanner()
        self.window = window
        self.refreshes = 0
        """Refreshes applied so far (tests wait on it)."""
        self.last_error: str | None = None
        """Why the database was last unreachable (shown while down)."""
        self._timer: Timer | None = None
        self._read_error: str | None = None
        self._stop = threading.Event()
        self._shown_state: tuple[LinkState, dt.datetime | None, str | None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def on_mount(self) -> None:
        """Plan the first refresh and start the change listener."""
        self._plan()
        self._listen()

    def on_unmount(self) -> None:
        """Let the listener thread end."""
        self._stop.set()

    @work(thread=True, group="listen", exit_on_error=False)
    def _listen(self) -> None:
        # post_message is thread-safe and never blocks, so this loop cannot hang on a
        # closing app.
        listen_loop(
            self.source.listen,
            self._stop,
            lambda event: self.post_message(_Heard(event)),
        )

    @on(_Heard)
    def _heard(self, message: _Heard) -> None:
        """A change notification or a listener state change."""
        self.planner.listener_event(message.event, self.clock.now())
        self._show_state()
        self._plan()

    # ------------------------------------------------------------------ refresh

    def _plan(self) -> None:
        """(Re)arm the one timer for the next refresh the planner wants."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        delay = self.planner.delay(self.clock.now())
        if delay is not None:
            self._timer = self.set_timer(max(delay, 0.01), self._due)

    def _due(self) -> None:
        self._timer = None
        if not self.screen_stack:
            return  # shutting down
        screen = self.screen
        if not isinstance(screen, DataScreen):
            return  # a dialog is open: the screen underneath asks again when it shows
        if self.planner.due(self.clock.now()):
            self.planner.started(self.clock.now())
            self._refresh(screen)
        else:
            self._plan()

    @work(thread=True, group="refresh", exit_on_error=False)
    def _refresh(self, screen: DataScreen[Any]) -> _Refreshed:
        try:
            return _Refreshed(screen=screen, data=screen.load(self.source))
        except SourceUnavailable as exc:
            return _Refreshed(screen=screen, error=str(exc), down=True)
        except ReproqError as exc:
            return _Refreshed(screen=screen, error=str(exc))

    def request_refresh(self, *, immediate: bool = True) -> None:
        """Re-read the visible screen soon (``immediate``: at the next tick, even frozen)."""
        self.planner.mark_stale(self.clock.now(), immediate=immediate)
        self._plan()

    def screen_shown(self, screen: DataScreen[Any]) -> None:
        """A data screen became visible: show the state and read its data now."""
        self._shown_state = None
        self._show_state()
        self.request_refresh()

    @on(Worker.StateChanged)
    def _worker_done(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if not self.screen_stack:
            return  # shutting down: nothing left to show it on
        if worker.state is WorkerState.ERROR:
            if worker.group == "refresh":
                self.planner.finished(self.clock.now(), ok=False)
                self._plan()
            self.notify(
                f"{type(worker.error).__name__}: {worker.error}",
                title="Unexpected error",
                severity="error",
                markup=False,
            )
            return
        if worker.state is not WorkerState.SUCCESS:
            return
        result = worker.result
        if isinstance(result, _Refreshed):
            self._apply_refresh(result)
        elif isinstance(result, _Done):
            self._apply_done(result)

    def _apply_refresh(self, result: _Refreshed) -> None:
        now = self.clock.now()
        was_down = self.planner.down
        self.planner.finished(now, ok=result.error is None, down=result.down)
        if result.down:
            if not was_down:
                self.notify(
                    result.error or "the database does not answer",
                    title="Database down",
                    severity="error",
                    markup=False,
                )
            self.last_error = result.error
        elif was_down:
            self.last_error = None
            self.notify("the database answers again", title="Reconnected")
        screen = result.screen
        if screen.is_attached:
            if result.error is None:
                self._read_error = None
                screen.show_data(result.data)
                screen.changed()
                self.refreshes += 1
            elif not result.down and result.error != self._read_error:
                # Once per distinct error, not on every poll.
                self._read_error = result.error
                screen.show_error(result.error)
        self._show_state()
        self._plan()

    def _show_state(self) -> None:
        state, updated = self.planner.state, self.planner.last_success
        shown = (state, updated, self.last_error)
        if shown == self._shown_state:
            return
        self._shown_state = shown
        screen = self.screen
        for bar in screen.query(TopBar):
            bar.show_state(state, updated)
        if isinstance(screen, DataScreen):
            screen.link_changed()

    # ------------------------------------------------------------------ actions

    def perform(
        self,
        job: ActionJob,
        *,
        confirm: tuple[str, str, str] | None = None,
        ask: str | None = None,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Run an operator action in a worker, after a confirmation when ``confirm`` is
        given as (title, message, verb); its outcome becomes a notification.

        ``then`` runs on the UI thread once the user said yes (clearing a selection).
        """
        if confirm is None:
            self._run_job(job, "")
            return
        title, message, verb = confirm

        def answered(answer: str | None) -> None:
            if answer is None:
                return
            if then is not None:
                then()
            self._run_job(job, answer)

        self.push_screen(ConfirmScreen(title, message, verb=verb, ask=ask), answered)

    @work(thread=True, group="action", exit_on_error=False)
    def _run_job(self, job: ActionJob, answer: str) -> _Done:
        try:
            return _Done(message=job(self.source, answer), severity="information")
        except ReproqError as exc:
            return _Done(message=str(exc), severity="error")

    def _apply_done(self, done: _Done) -> None:
        self.notify(
            done.message,
            title="Failed" if done.severity == "error" else "",
            severity=done.severity,
            markup=False,
        )
        self.request_refresh()

    # ------------------------------------------------------------------ keys

    def action_show(self, name: str) -> None:
        """Switch to a screen (from a detail view: back to its list)."""
        if name == self.current_mode:
            while len(self.screen_stack) > 1 and isinstance(self.screen, DataScreen):
                self.pop_screen()
            return
        self.switch_mode(name)

    def show_tasks(self, filter_text: str) -> None:
        """Switch to the task list filtered by ``filter_text`` (from other screens)."""
        if self.current_mode != "tasks":
            self.switch_mode("tasks")
        while len(self.screen_stack) > 1 and not isinstance(self.screen, TasksScreen):
            self.pop_screen()
        screen = self.screen
        if isinstance(screen, TasksScreen):
            screen.set_filter(filter_text)

    def action_toggle_freeze(self) -> None:
        """Pause or resume automatic refresh."""
        self.planner.frozen = not self.planner.frozen
        self.notify(
            "refresh paused: press f to resume" if self.planner.frozen else "refresh resumed",
            timeout=2,
        )
        self._show_state()
        self._plan()

    def action_refresh_now(self) -> None:
        """Re-read the current screen now."""
        self.request_refresh()

    def action_help(self) -> None:
        """Show every binding."""
        self.push_screen(HelpScreen())

    def on_key(self, event: events.Key) -> None:
        """A key of an action that is greyed out says why instead of doing nothing."""
        active = self.screen.active_bindings.get(event.key)
        if active is None or active.enabled:
            return
        node = active.node
        action = active.binding.action
        reason = node.disabled_reason(action) if isinstance(node, DataScreen) else None
        self.notify(
            reason or f"{active.binding.description} is not available here",
            title=f"{active.binding.description} unavailable",
            severity="warning",
            markup=False,
            timeout=3,
        )

    # ------------------------------------------------------------------ palette

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette offers the same actions as the keys, from the same table."""
        for name, title in SCREEN_TITLES.items():
            yield SystemCommand(
                f"Go to {title}", _help_of(f"app.show('{name}')"), partial(self.action_show, name)
            )
        for key in APP_KEYS:
            if key.palette and not key.action.startswith("app.show("):
                yield SystemCommand(key.label, key.help, partial(self.run_action, key.action))
        if isinstance(screen, DataScreen) and screen.SCOPE:
            for key in keys_for(screen.SCOPE):
                action = key.action
                if not key.palette or not screen.check_action(action, ()):
                    continue
                yield SystemCommand(
                    f"{key.label} ({SCREEN_TITLES.get(screen.TAB, screen.TAB)})",
                    key.help,
                    partial(self.run_action, action, screen),
                )
        yield from super().get_system_commands(screen)


def _help_of(action: str) -> str:
    found: Key | None = next((k for k in APP_KEYS if k.action == action), None)
    return found.help if found else ""


def _hosts_screens(app: ReproqApp) -> AppHost:
    # Never called: mypy checks here that the app gives its screens what they ask for.
    return app
