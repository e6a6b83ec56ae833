"""Workers: who is running, where, on which queues, and who went quiet."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from reproq.ops.observe import WorkerInfo
from reproq.tui import format as fmt
from reproq.tui.bindings import bindings_for
from reproq.tui.screens.base import DataScreen
from reproq.tui.source import DataSource
from reproq.tui.widgets.keyed_table import Cell, Col, KeyedTable

__all__ = ["WorkersScreen"]


class WorkersScreen(DataScreen[list[WorkerInfo]]):
    """Registered workers keyed by worker id; stale ones in red."""

    SCOPE = "workers"
    TAB = "workers"
    BINDINGS = bindings_for("workers")

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, WorkerInfo] = {}

    def compose_body(self) -> ComposeResult:
        """The table and a line about the highlighted worker."""
        yield KeyedTable(
            [
                Col(key="worker", label="Worker", width=14, flex=True),
                Col(key="host", label="Host", width=10),
                Col(key="queues", label="Queues", width=14),
                Col(key="conc", label="Slots", width=5),
                Col(key="run", label="Run", width=4),
                Col(key="started", label="Up", width=6),
                Col(key="seen", label="Last seen", width=9),
            ],
            key_column="worker",
            id="workers",
        )
        yield Static("", id="worker-detail")

    def on_mount(self) -> None:
        """Start in the table."""
        self.query_one("#workers", KeyedTable).focus()

    def load(self, source: DataSource) -> list[WorkerInfo]:
        """Every registered worker."""
        return source.workers()

    def show_data(self, data: list[WorkerInfo]) -> None:
        """Update rows in place."""
        self.by_id = {w.worker_id: w for w in data}
        now = self.reproq.clock.now()
        rows: list[tuple[str, list[Cell]]] = []
        for w in data:
            seen = Text(
                ("stale " if w.stale else "") + fmt.duration(w.last_seen_seconds),
                style="bold red" if w.stale else "green",
                justify="right",
            )
            rows.append(
                (
                    w.worker_id,
                    [
                        w.worker_id,
                        fmt.clip(w.hostname, 10),
                        fmt.clip(",".join(w.queues) or "*", 14),
                        Text(str(w.concurrency or "-"), justify="right"),
                        Text(
                            str(w.running),
                            justify="right",
                            style="bold yellow" if w.running else "dim",
                        ),
                        fmt.age(now, w.started_at),
                        seen,
                    ],
                )
            )
        self.query_one("#workers", KeyedTable).sync(rows)
        self._show_detail()

    @property
    def current(self) -> WorkerInfo | None:
        """The highlighted worker."""
        key = self.query_one("#workers", KeyedTable).cursor_key
        return self.by_id.get(key) if key is not None else None

    def _show_detail(self) -> None:
        w = self.current
        text = Text()
        if w is not None:
            text.append(w.worker_id, style="bold")
            text.append(f"  version {w.version or '?'} · started {fmt.timestamp(w.started_at)}")
            text.append(f"\nqueues: {', '.join(w.queues) or 'all'}", style="dim")
            if w.stale:
                text.append(
                    f"\nno heartbeat for {fmt.duration(w.last_seen_seconds)}: "
                    "probably gone; its leases are reclaimed when they expire",
                    style="red",
                )
        self.query_one("#worker-detail", Static).update(text)

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_detail()
        self.changed()

    def disabled_reason(self, action: str) -> str | None:
        """Enter needs a highlighted worker."""
        if self.is_mounted and action == "show_tasks" and self.current is None:
            return "no worker is highlighted"
        return None

    def action_show_tasks(self) -> None:
        """The runs this worker claimed."""
        w = self.current
        if w is not None:
            self.reproq.show_tasks(f"worker:{w.worker_id}")
