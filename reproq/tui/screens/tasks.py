"""Tasks: task runs keyed by result_id, filtered, sorted, multi-selected, acted upon."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Input, Static

from reproq.errors import UsageError
from reproq.models import TaskStatus
from reproq.ops.observe import TaskFilter, TaskOrder, TaskRow, parse_filter
from reproq.tui import format as fmt
from reproq.tui.actions import (
    bulk_cancel_job,
    bulk_retry_job,
    cancel_job,
    cancel_reason,
    confirm_bulk_cancel,
    confirm_bulk_retry,
    confirm_cancel,
    confirm_replay,
    confirm_retry,
    replay_job,
    replay_reason,
    retry_job,
    retry_reason,
    selection_reason,
)
from reproq.tui.bindings import bindings_for
from reproq.tui.screens.base import DataScreen
from reproq.tui.screens.task_detail import TaskDetailScreen
from reproq.tui.source import DataSource
from reproq.tui.widgets.keyed_table import Cell, Col, KeyedTable

__all__ = ["TasksScreen"]

PAGE = 500
"""Rows read per refresh; the filter narrows what they are."""

_SORTS: tuple[str, ...] = ("newest", "oldest", "status", "queue", "task")
_STATUS_ORDER = {s: i for i, s in enumerate(TaskStatus)}


class TasksScreen(DataScreen[list[TaskRow]]):
    """Task runs with a filter line, multi-select and the retry/replay/cancel actions."""

    SCOPE = "tasks"
    TAB = "tasks"
    BINDINGS = bindings_for("tasks")

    COLUMNS: ClassVar[tuple[Col, ...]] = (
        Col(key="sel", label=" ", width=1),
        Col(key="id", label="ID", width=7),
        Col(key="status", label="Status", width=10),
        Col(key="task", label="Task", width=22, flex=True),
        Col(key="queue", label="Queue", width=9),
        Col(key="att", label="Try", width=5),
        Col(key="age", label="Age", width=6),
    )

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self.filter: TaskFilter = TaskFilter()
        self.sort = "newest"
        self.selected: set[int] = set()
        self.rows: dict[int, TaskRow] = {}
        self._order: list[int] = []
        self._loaded = False

    def compose_body(self) -> ComposeResult:
        """Filter line, table, preview of the highlighted row, status line."""
        yield Input(
            value=self.filter_text,
            placeholder="/ filter: status:failed queue:emails task:billing.* age:>1h",
            id="filter",
        )
        yield KeyedTable(self.COLUMNS, key_column="id", id="tasks")
        yield Static("", id="tasks-preview")
        yield Static("", id="tasks-status")

    def on_mount(self) -> None:
        """Start in the table."""
        self.query_one("#tasks", KeyedTable).focus()
        self._show_status()

    # ---------------------------------------------------------------- data

    def load(self, source: DataSource) -> list[TaskRow]:
        """The rows for the current filter and server order."""
        order = TaskOrder.OLDEST if self.sort == "oldest" else TaskOrder.NEWEST
        return source.tasks(self.filter, order=order, limit=PAGE)

    def show_data(self, data: list[TaskRow]) -> None:
        """Update rows in place; the cursor and the selection stay."""
        self._loaded = True
        rows = self._sorted(data)
        self.rows = {r.result_id: r for r in rows}
        self._order = [r.result_id for r in rows]
        # A selected row that left the view is dropped: acting on rows nobody can see
        # would surprise.
        self.selected &= set(self.rows)
        self.query_one("#tasks", KeyedTable).sync(
            [(str(r.result_id), self._cells(r)) for r in rows]
        )
        self._show_preview()
        self._show_status()

    def _sorted(self, rows: Sequence[TaskRow]) -> list[TaskRow]:
        if self.sort == "status":
            return sorted(rows, key=lambda r: (_STATUS_ORDER[r.status], -r.result_id))
        if self.sort == "queue":
            return sorted(rows, key=lambda r: (r.queue_name, -r.result_id))
        if self.sort == "task":
            return sorted(rows, key=lambda r: (r.task_path, -r.result_id))
        return list(rows)

    def _cells(self, row: TaskRow) -> list[Cell]:
        clock_now = self.reproq.clock.now()
        mark = Text("●", style="bold magenta") if row.result_id in self.selected else " "
        scheduled = row.run_after is not None and row.run_after > clock_now
        status = fmt.status_text(row.status, cancel_requested=row.cancel_requested)
        if scheduled and row.status is TaskStatus.READY:
            status = Text("READY+", style="cyan")
        return [
            mark,
            Text(str(row.result_id), justify="right"),
            status,
            row.task_path,
            fmt.clip(row.queue_name, 9),
            f"{row.attempts}/{row.max_attempts}",
            fmt.age(clock_now, row.enqueued_at),
        ]

    @property
    def current(self) -> TaskRow | None:
        """The highlighted row."""
        key = self.query_one("#tasks", KeyedTable).cursor_key
        return self.rows.get(int(key)) if key is not None else None

    def _show_preview(self) -> None:
        row = self.current
        preview = Text(no_wrap=True, overflow="ellipsis")
        if row is not None:
            preview.append(f"#{row.result_id} ", style="bold")
            if row.leased_by and row.status is TaskStatus.RUNNING:
                preview.append(f"on {row.leased_by} ", style="yellow")
            if row.run_after is not None and row.status is TaskStatus.READY:
                preview.append(f"runs {fmt.ago(self.reproq.clock.now(), row.run_after)} ")
            if row.last_error:
                preview.append(fmt.clip(row.last_error, 200), style="red")
            elif row.parent_id:
                preview.append(f"waits for #{row.parent_id}", style="blue")
        self.query_one("#tasks-preview", Static).update(preview)

    def _show_status(self) -> None:
        text = Text(no_wrap=True, overflow="ellipsis", style="dim")
        if self._loaded:
            n = len(self._order)
            text.append(f"{n}{'+' if n >= PAGE else ''} row{'' if n == 1 else 's'}")
        else:
            text.append("waiting for data…")
        if self.selected:
            text.append(f" · {len(self.selected)} selected", style="bold magenta")
        text.append(f" · sort {self.sort}")
        text.append(f" · filter {self.filter_text}" if self.filter_text else " · no filter")
        self.query_one("#tasks-status", Static).update(text)

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_preview()
        self.changed()

    # ---------------------------------------------------------------- filter

    def set_filter(self, text: str) -> bool:
        """Use ``text`` as the filter; False (and a notification) if it does not parse."""
        try:
            parsed = parse_filter(text)
        except UsageError as exc:
            self.notify(str(exc), title="Bad filter", severity="error", markup=False)
            return False
        self.filter_text = " ".join(text.split())
        self.filter = parsed
        self.selected.clear()
        if self.is_mounted:
            self.query_one("#filter", Input).value = self.filter_text
            self._show_status()
        self.reproq.request_refresh()
        return True

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.set_filter(event.value):
            self.query_one("#tasks", KeyedTable).focus()

    def action_filter(self) -> None:
        """Jump to the filter line."""
        self.query_one("#filter", Input).focus()

    def action_clear(self) -> None:
        """Leave the filter line, else clear the selection, else clear the filter."""
        field = self.query_one("#filter", Input)
        if field.has_focus:
            field.value = self.filter_text
            self.query_one("#tasks", KeyedTable).focus()
        elif self.selected:
            self._set_selection(set())
        elif self.filter_text:
            self.set_filter("")

    def action_cycle_sort(self) -> None:
        """Next sort order; newest/oldest re-read the rows, the others reorder them."""
        self.sort = _SORTS[(_SORTS.index(self.sort) + 1) % len(_SORTS)]
        self._show_status()
        self.reproq.request_refresh()

    # ---------------------------------------------------------------- selection

    def _set_selection(self, ids: set[int]) -> None:
        table = self.query_one("#tasks", KeyedTable)
        changed = ids ^ self.selected
        self.selected = ids
        for result_id in changed:
            mark: Cell = Text("●", style="bold magenta") if result_id in ids else " "
            table.set_cell(str(result_id), "sel", mark)
        self._show_status()
        self.changed()

    def action_toggle_select(self) -> None:
        """Add or remove the highlighted row, then move down."""
        row = self.current
        if row is None:
            return
        self._set_selection(self.selected ^ {row.result_id})
        self.query_one("#tasks", KeyedTable).action_cursor_down()

    def action_select_all(self) -> None:
        """Select every row shown (again: none)."""
        everything = set(self._order)
        self._set_selection(set() if self.selected == everything else everything)

    def _selected_rows(self) -> list[TaskRow]:
        return [self.rows[i] for i in self._order if i in self.selected]

    # ---------------------------------------------------------------- actions

    def disabled_reason(self, action: str) -> str | None:
        """Actions follow the state of the selection, else of the highlighted row."""
        if not self.is_mounted:
            return None
        if action in ("retry", "cancel") and self.selected:
            return selection_reason(action, self._selected_rows())
        row = self.current
        if action == "retry":
            return retry_reason(row)
        if action == "replay":
            return replay_reason(row)
        if action == "cancel":
            return cancel_reason(row)
        if action in ("open", "toggle_select", "select_all") and row is None:
            return "no task run is shown"
        return None

    def action_open(self) -> None:
        """Open the highlighted run."""
        row = self.current
        if row is not None:
            self.app.push_screen(TaskDetailScreen(row.result_id))

    def action_retry(self) -> None:
        """Retry the selection, else the highlighted run."""
        if self.selected:
            rows = self._selected_rows()
            self.reproq.perform(
                bulk_retry_job([r.result_id for r in rows]),
                confirm=confirm_bulk_retry(rows),
                then=lambda: self._set_selection(set()),
            )
            return
        row = self.current
        if row is not None:
            self.reproq.perform(retry_job(row.result_id), confirm=confirm_retry(row))

    def action_replay(self) -> None:
        """Replay the highlighted run."""
        row = self.current
        if row is not None:
            self.reproq.perform(replay_job(row.result_id), confirm=confirm_replay(row))

    def action_cancel(self) -> None:
        """Cancel the selection, else the highlighted run."""
        if self.selected:
            rows = self._selected_rows()
            self.reproq.perform(
                bulk_cancel_job([r.result_id for r in rows]),
                confirm=confirm_bulk_cancel(rows),
                then=lambda: self._set_selection(set()),
            )
            return
        row = self.current
        if row is not None:
            self.reproq.perform(cancel_job(row.result_id), confirm=confirm_cancel(row))
