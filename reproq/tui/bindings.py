"""Every key binding of the TUI, in one place.

Screens take their ``BINDINGS`` from here, the help screen lists these tables, and the
command palette offers the same actions, so the footer, the help and the palette can
never disagree about what a key does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from textual.binding import Binding, BindingType

__all__ = [
    "APP_KEYS",
    "SCREEN_KEYS",
    "SCREEN_TITLES",
    "Key",
    "bindings_for",
    "keys_for",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class Key:
    """One binding: the key, the action it runs, and how people see it described.

    ``label`` is the short footer text; ``help`` is the sentence shown on the help
    screen and under the command palette entry. ``palette=False`` keeps an entry out of
    the palette (keys that only make sense as keys, such as moving a selection).
    """

    key: str
    action: str
    label: str
    help: str
    show: bool = True
    palette: bool = True
    display: str | None = None
    priority: bool = False

    def binding(self) -> Binding:
        """The Textual binding for this key."""
        return Binding(
            self.key,
            self.action,
            self.label,
            show=self.show,
            key_display=self.display,
            priority=self.priority,
        )


SCREEN_TITLES: Mapping[str, str] = {
    "overview": "Overview",
    "queues": "Queues",
    "tasks": "Tasks",
    "workers": "Workers",
    "schedules": "Schedules",
}
"""The switchable screens, in tab order, with their titles."""

APP_KEYS: tuple[Key, ...] = (
    Key(key="1", action="app.show('overview')", label="Overview",
        help="Show the overview: counts, throughput, workers, beat.", show=False),
    Key(key="2", action="app.show('queues')", label="Queues",
        help="Show the queues with their counts, pause state and limits.", show=False),
    Key(key="3", action="app.show('tasks')", label="Tasks",
        help="Show the task runs, filtered and sortable.", show=False),
    Key(key="4", action="app.show('workers')", label="Workers",
        help="Show the registered workers and their liveness.", show=False),
    Key(key="5", action="app.show('schedules')", label="Schedules",
        help="Show the periodic tasks of beat.", show=False),
    Key(key="f", action="app.toggle_freeze", label="Freeze",
        help="Pause or resume automatic refresh (the data on screen stays as it is)."),
    Key(key="ctrl+r", action="app.refresh_now", label="Refresh",
        help="Re-read the data of this screen now.", show=False),
    Key(key="question_mark", action="app.help", label="Help",
        help="List every key binding.", display="?"),
    Key(key="q", action="app.quit", label="Quit", help="Leave reproq tui.", show=False),
)  # fmt: skip
"""Keys that work on every screen."""

SCREEN_KEYS: Mapping[str, tuple[Key, ...]] = {
    "overview": (
        Key(key="enter", action="show_failing", label="Failures",
            help="Show the FAILED runs of the highlighted failing task."),
    ),
    "queues": (
        Key(key="enter", action="show_tasks", label="Tasks",
            help="Show the task runs of the highlighted queue."),
        Key(key="p", action="pause", label="Pause",
            help="Pause the highlighted queue: workers stop claiming from it."),
        Key(key="u", action="resume", label="Resume",
            help="Resume the highlighted paused queue."),
    ),
    "tasks": (
        Key(key="enter", action="open", label="Open",
            help="Open the highlighted task run: spec, errors, lineage, logs."),
        Key(key="space", action="toggle_select", label="Select", display="␣",
            help="Add or remove the highlighted row from the selection.", palette=False),
        Key(key="a", action="select_all", label="All",
            help="Select every row shown.", show=False),
        Key(key="escape", action="clear", label="Clear",
            help="Clear the selection, or else the filter.", show=False),
        Key(key="slash", action="filter", label="Filter", display="/",
            help="Edit the filter, e.g. status:failed queue:emails task:billing.* age:>1h."),
        Key(key="r", action="retry", label="Retry",
            help="Retry: put FAILED runs (the selection, else the highlighted one) back to READY."),
        Key(key="R", action="replay", label="Replay",
            help="Replay: enqueue a new run with the spec of the highlighted one."),
        Key(key="c", action="cancel", label="Cancel",
            help="Cancel READY/WAITING runs, request a stop of RUNNING ones."),
        Key(key="s", action="cycle_sort", label="Sort",
            help="Sort by the next column: newest, oldest, status, queue, task.", show=False),
    ),
    "task_detail": (
        Key(key="escape", action="back", label="Back", help="Back to the task list."),
        Key(key="r", action="retry", label="Retry",
            help="Retry: put this FAILED run back to READY."),
        Key(key="R", action="replay", label="Replay",
            help="Replay: enqueue a new run with the spec of this one."),
        Key(key="c", action="cancel", label="Cancel",
            help="Cancel this run (a RUNNING one is asked to stop)."),
        Key(key="o", action="open_related", label="Parent",
            help="Open the run this one descends from (chain parent or replay source)."),
    ),
    "workers": (
        Key(key="enter", action="show_tasks", label="Tasks",
            help="Show the task runs the highlighted worker has claimed."),
    ),
    "schedules": (
        Key(key="n", action="run_now", label="Run now",
            help="Enqueue one run of the highlighted schedule now."),
        Key(key="e", action="enable", label="Enable",
            help="Enable the highlighted schedule."),
        Key(key="d", action="disable", label="Disable",
            help="Disable the highlighted schedule (beat skips it)."),
    ),
    "confirm": (
        Key(key="y", action="confirm", label="Yes", help="Go ahead with the action."),
        Key(key="n", action="dismiss_modal", label="No", help="Do nothing."),
        Key(key="escape", action="dismiss_modal", label="No", help="Do nothing.", show=False),
    ),
    "help": (
        Key(key="escape", action="close", label="Close", help="Close the help."),
        Key(key="question_mark", action="close", label="Close", help="Close the help.",
            display="?", show=False),
        Key(key="q", action="close", label="Close", help="Close the help.", show=False),
    ),
}  # fmt: skip
"""Keys of each screen, by screen name."""


def keys_for(scope: str) -> tuple[Key, ...]:
    """The keys of one screen (``"app"`` for the global ones)."""
    if scope == "app":
        return APP_KEYS
    return SCREEN_KEYS[scope]


def bindings_for(scope: str) -> list[BindingType]:
    """The Textual bindings of one screen (``"app"`` for the global ones)."""
    return [k.binding() for k in keys_for(scope)]
