"""Schedules: the periodic tasks of beat; run one now, enable or disable."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from reproq.ops.observe import ScheduleInfo
from reproq.tui import format as fmt
from reproq.tui.bindings import bindings_for
from reproq.tui.screens.base import DataScreen
from reproq.tui.source import DataSource
from reproq.tui.widgets.keyed_table import Cell, Col, KeyedTable

__all__ = ["SchedulesScreen"]


def _cron(s: ScheduleInfo) -> str:
    """The cron fields, with the city of a non-UTC zone (``0 2 * * * Berlin``)."""
    if s.timezone.upper() == "UTC":
        return s.cron
    return f"{s.cron} {s.timezone.rsplit('/', 1)[-1]}"


class SchedulesScreen(DataScreen[list[ScheduleInfo]]):
    """Periodic tasks keyed by name."""

    SCOPE = "schedules"
    TAB = "schedules"
    BINDINGS = bindings_for("schedules")

    def __init__(self) -> None:
        super().__init__()
        self.schedules: dict[str, ScheduleInfo] = {}

    def compose_body(self) -> ComposeResult:
        """The table and a line about the highlighted schedule."""
        yield KeyedTable(
            [
                Col(key="name", label="Name", width=10, flex=True),
                Col(key="cron", label="Cron (zone)", width=16),
                Col(key="task", label="Task", width=10, flex=True),
                Col(key="queue", label="Queue", width=8),
                Col(key="on", label="On", width=3),
                Col(key="last", label="Last", width=6),
                Col(key="next", label="Next", width=6),
            ],
            key_column="name",
            id="schedules",
        )
        yield Static("", id="schedule-detail")

    def on_mount(self) -> None:
        """Start in the table."""
        self.query_one("#schedules", KeyedTable).focus()

    def load(self, source: DataSource) -> list[ScheduleInfo]:
        """Every schedule."""
        return source.schedules()

    def show_data(self, data: list[ScheduleInfo]) -> None:
        """Update rows in place."""
        self.schedules = {s.name: s for s in data}
        now = self.reproq.clock.now()
        rows: list[tuple[str, list[Cell]]] = []
        for s in data:
            nxt = fmt.ago(now, s.next_run_at).removeprefix("in ")
            rows.append(
                (
                    s.name,
                    [
                        s.name,
                        fmt.clip(_cron(s), 16),
                        s.task_path,
                        fmt.clip(s.queue_name, 8),
                        Text("on", style="green") if s.enabled else Text("off", style="bold red"),
                        fmt.age(now, s.last_run_at) if s.last_run_at else "never",
                        nxt if s.enabled else Text(nxt, style="dim"),
                    ],
                )
            )
        self.query_one("#schedules", KeyedTable).sync(rows)
        self._show_detail()

    @property
    def current(self) -> ScheduleInfo | None:
        """The highlighted schedule."""
        key = self.query_one("#schedules", KeyedTable).cursor_key
        return self.schedules.get(key) if key is not None else None

    def _show_detail(self) -> None:
        s = self.current
        text = Text()
        if s is not None:
            text.append(s.name, style="bold")
            text.append(f"  {s.cron} ({s.timezone}) → {s.task_path} on {s.queue_name}")
            text.append(
                f"\nnext {fmt.timestamp(s.next_run_at)} · last {fmt.timestamp(s.last_run_at)}"
                f" · misfire {s.misfire_policy}",
                style="dim",
            )
        self.query_one("#schedule-detail", Static).update(text)

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_detail()
        self.changed()

    def disabled_reason(self, action: str) -> str | None:
        """Enable needs a disabled schedule and disable an enabled one."""
        if not self.is_mounted:
            return None
        s = self.current
        if s is None:
            return "no schedule is highlighted"
        if action == "enable" and s.enabled:
            return f"schedule {s.name} is already enabled"
        if action == "disable" and not s.enabled:
            return f"schedule {s.name} is already disabled"
        return None

    def action_run_now(self) -> None:
        """Enqueue one run of the highlighted schedule now."""
        s = self.current
        if s is None:
            return
        name = s.name

        def job(source: DataSource, _answer: str) -> str:
            return f"enqueued run #{source.run_schedule_now(name)} of {name}"

        self.reproq.perform(
            job,
            confirm=(
                f"Run {name} now?",
                f"One run of {s.task_path} is enqueued on {s.queue_name} now; the schedule "
                "itself is unchanged.",
                "Run now",
            ),
        )

    def _set_enabled(self, enabled: bool) -> None:
        s = self.current
        if s is None:
            return
        name = s.name

        def job(source: DataSource, _answer: str) -> str:
            state = source.set_schedule_enabled(name, enabled)
            return f"{'enabled' if state.enabled else 'disabled'} schedule {state.name}"

        if enabled:
            self.reproq.perform(job)
        else:
            self.reproq.perform(
                job,
                confirm=(
                    f"Disable {name}?",
                    "Beat skips it until it is enabled again.",
                    "Disable",
                ),
            )

    def action_enable(self) -> None:
        """Enable the highlighted schedule."""
        self._set_enabled(True)

    def action_disable(self) -> None:
        """Disable the highlighted schedule."""
        self._set_enabled(False)
