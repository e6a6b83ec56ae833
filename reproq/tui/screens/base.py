"""What every data screen shares: the top bar, the footer and the load/show cycle."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from reproq.clock import Clock
from reproq.tui.bindings import keys_for
from reproq.tui.live import RefreshPlanner
from reproq.tui.source import ActionJob, DataSource
from reproq.tui.widgets.top_bar import TopBar

__all__ = ["AppHost", "DataScreen"]

T = TypeVar("T")


class AppHost(Protocol):
    """What a data screen asks of the app it runs in (:class:`reproq.tui.app.ReproqApp`).

    A seam rather than an import, so that the app may import its screens.
    """

    source: DataSource
    clock: Clock
    planner: RefreshPlanner
    window: dt.timedelta
    last_error: str | None

    def perform(
        self,
        job: ActionJob,
        *,
        confirm: tuple[str, str, str] | None = None,
        ask: str | None = None,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Run an operator action, after a confirmation when ``confirm`` is given."""
        ...

    def request_refresh(self, *, immediate: bool = True) -> None:
        """Re-read the visible screen soon."""
        ...

    def screen_shown(self, screen: DataScreen[Any]) -> None:
        """A data screen became visible."""
        ...

    def show_tasks(self, filter_text: str) -> None:
        """Switch to the task list filtered by ``filter_text``."""
        ...


class DataScreen(Screen[None], Generic[T]):
    """A screen that shows data read from the :class:`DataSource`.

    The app refreshes the visible data screen: it calls :meth:`load` in a worker thread
    (only plain attributes may be read there) and hands the result to :meth:`show_data`
    on the UI thread. Actions that are not possible for the highlighted row return a
    reason from :meth:`disabled_reason`; the footer greys them out and pressing the key
    says why.
    """

    SCOPE: ClassVar[str] = ""
    """The name of this screen's key table in :mod:`reproq.tui.bindings` (its
    ``BINDINGS`` are ``bindings_for(SCOPE)``)."""
    TAB: ClassVar[str] = ""
    """The tab highlighted in the top bar while this screen shows."""

    _action_state: tuple[tuple[str, bool], ...] = ()

    def compose(self) -> ComposeResult:
        """Top bar, the screen's own widgets, footer."""
        yield TopBar(self.TAB)
        yield from self.compose_body()
        yield Footer(compact=True)

    def compose_body(self) -> ComposeResult:
        """The widgets between the top bar and the footer."""
        return iter(())

    @property
    def reproq(self) -> AppHost:
        """The app, typed."""
        return cast(AppHost, self.app)

    def load(self, source: DataSource) -> T:
        """Read this screen's data (runs in a worker thread: no widget access)."""
        raise NotImplementedError

    def show_data(self, data: T) -> None:
        """Put freshly read data on screen (UI thread)."""
        raise NotImplementedError

    def show_error(self, message: str) -> None:
        """A read failed for a reason other than the database being down."""
        self.notify(message, title="Could not read", severity="error", markup=False)

    def disabled_reason(self, action: str) -> str | None:
        """Why ``action`` cannot run now, or None when it can."""
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out (None) what :meth:`disabled_reason` refuses."""
        return None if self.disabled_reason(action) else True

    def on_screen_resume(self) -> None:
        """Showing the screen asks for fresh data at once."""
        self.reproq.screen_shown(self)

    def link_changed(self) -> None:
        """The connection state changed (screens that show it redraw)."""

    def changed(self) -> None:
        """The highlighted row or selection changed: update which actions are possible.

        The footer is redrawn only when an action became possible or impossible, since
        redrawing it on every cursor move would cost more than the move itself.
        """
        state = tuple(
            (key.action, self.disabled_reason(key.action) is None) for key in keys_for(self.SCOPE)
        )
        if state != self._action_state:
            self._action_state = state
            self.refresh_bindings()
