"""The one-line bar at the top of every screen: the screen tabs and the link state."""

from __future__ import annotations

import datetime as dt

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from reproq.tui.bindings import SCREEN_TITLES
from reproq.tui.live import LinkState

__all__ = ["TopBar"]

_STATE_STYLE: dict[LinkState, tuple[str, str]] = {
    LinkState.CONNECTING: ("…", "yellow"),
    LinkState.LIVE: ("●", "bold green"),
    LinkState.POLLING: ("●", "bold cyan"),
    LinkState.PAUSED: ("‖", "bold yellow"),
    LinkState.DOWN: ("✖", "bold red"),
}


class TopBar(Horizontal):
    """Screen tabs (the digit that shows each) on the left, the link state on the right."""

    def __init__(self, current: str) -> None:
        super().__init__()
        self._current = current

    def compose(self) -> ComposeResult:
        """The tabs and the state label."""
        yield Static(self._tabs(), id="tabs")
        yield Static("", id="link")

    def _tabs(self) -> Text:
        text = Text(" reproq ", style="bold")
        for number, (name, title) in enumerate(SCREEN_TITLES.items(), start=1):
            style = "reverse bold" if name == self._current else ""
            text.append(" ")
            text.append(f"{number} {title}", style=style)
        return text

    def show_state(self, state: LinkState, updated: dt.datetime | None) -> None:
        """Show the link state and when the data was last read."""
        mark, style = _STATE_STYLE[state]
        text = Text()
        text.append(f"{mark} {state}", style=style)
        if updated is not None:
            text.append(f" {updated.astimezone(dt.UTC):%H:%M:%S}", style="dim")
        self.query_one("#link", Static).update(text)
