"""The confirmation dialog every destructive or bulk action goes through."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from reproq.tui.bindings import bindings_for

__all__ = ["ConfirmScreen"]


class ConfirmScreen(ModalScreen[str | None]):
    """Asks yes or no; dismisses with None for no, else the text typed (``""`` if none).

    ``ask`` adds an optional one-line input (the reason of a queue pause, say).
    """

    BINDINGS = bindings_for("confirm")

    def __init__(self, title: str, message: str, *, verb: str, ask: str | None = None) -> None:
        super().__init__()
        self._title = title
        self._message = message
        self._verb = verb
        self._ask = ask

    def compose(self) -> ComposeResult:
        """Message, optional input, buttons."""
        with Vertical(id="dialog"):
            yield Static(Text(self._title, style="bold"), id="dialog-title")
            yield Static(Text(self._message), id="dialog-message")
            if self._ask is not None:
                yield Input(placeholder=self._ask, id="dialog-input")
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self._verb} (y)", variant="error", id="yes")
                yield Button("No (n)", variant="default", id="no")

    def on_mount(self) -> None:
        """Focus the input when there is one, else the safe answer."""
        if self._ask is not None:
            self.query_one("#dialog-input", Input).focus()
        else:
            self.query_one("#no", Button).focus()

    def _answer(self) -> str:
        if self._ask is None:
            return ""
        return self.query_one("#dialog-input", Input).value.strip()

    def action_confirm(self) -> None:
        """Yes."""
        self.dismiss(self._answer())

    def action_dismiss_modal(self) -> None:
        """No."""
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """The buttons answer like the keys."""
        event.stop()
        if event.button.id == "yes":
            self.action_confirm()
        else:
            self.action_dismiss_modal()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the input means yes."""
        event.stop()
        self.action_confirm()
