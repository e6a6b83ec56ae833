"""The help screen: every key binding, from the same table as the footer and palette."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from reproq.tui.bindings import APP_KEYS, SCREEN_KEYS, Key, bindings_for

__all__ = ["HelpScreen", "key_label"]

_SECTIONS: tuple[tuple[str, str], ...] = (
    ("app", "Everywhere"),
    ("overview", "Overview"),
    ("queues", "Queues"),
    ("tasks", "Tasks"),
    ("task_detail", "Task detail"),
    ("workers", "Workers"),
    ("schedules", "Schedules"),
    ("confirm", "Confirmation"),
    ("help", "This help"),
)


def key_label(key: Key) -> str:
    """How a key is written for people (``?``, ``ctrl+r``, ``R``)."""
    if key.display:
        return key.display
    return {"space": "space", "escape": "esc", "enter": "enter"}.get(key.key, key.key)


class HelpScreen(ModalScreen[None]):
    """Lists every binding, grouped by screen, plus the command palette key."""

    BINDINGS = bindings_for("help")

    def compose(self) -> ComposeResult:
        """One table per screen in a scrollable panel."""
        with VerticalScroll(id="help-body"):
            yield Static(self._render_keys(), id="help-keys")

    def _render_keys(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(justify="right", style="bold cyan", no_wrap=True)
        table.add_column()
        for scope, title in _SECTIONS:
            keys = APP_KEYS if scope == "app" else SCREEN_KEYS[scope]
            table.add_row(Text(title, style="bold underline"), "")
            for key in keys:
                table.add_row(key_label(key), key.help)
            if scope == "app":
                table.add_row(
                    "ctrl+p", "Open the command palette: every screen and action by name."
                )
            table.add_row("", "")
        table.add_row(
            "",
            Text(
                "Filter: status:failed,running queue:emails task:billing.* "
                "worker:w1 id:12,13 age:>1h age:<10m",
                style="dim",
            ),
        )
        return table

    def on_mount(self) -> None:
        """Scroll with the keyboard right away."""
        self.query_one("#help-body").focus()

    def action_close(self) -> None:
        """Back to the screen underneath."""
        self.dismiss(None)
