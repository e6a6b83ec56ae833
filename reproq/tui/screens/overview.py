"""Overview: counts by state, throughput, failures, workers, beat and paused queues."""

from __future__ import annotations

import datetime as dt

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from reproq.models import TaskStatus
from reproq.tui import format as fmt
from reproq.tui.bindings import bindings_for
from reproq.tui.live import LinkState
from reproq.tui.screens.base import DataScreen
from reproq.tui.source import DataSource, OverviewData
from reproq.tui.widgets.keyed_table import Col, KeyedTable

__all__ = ["OverviewScreen"]

_STATE_STYLE = {
    LinkState.LIVE: "bold green",
    LinkState.POLLING: "bold cyan",
    LinkState.PAUSED: "bold yellow",
    LinkState.DOWN: "bold red",
    LinkState.CONNECTING: "yellow",
}


class OverviewScreen(DataScreen[OverviewData]):
    """The whole queue at a glance."""

    SCOPE = "overview"
    TAB = "overview"
    BINDINGS = bindings_for("overview")

    def __init__(self) -> None:
        super().__init__()
        self.data: OverviewData | None = None
        self._window = dt.timedelta(hours=1)

    def compose_body(self) -> ComposeResult:
        """Counts and rates on top, failures and paused queues below."""
        with Horizontal(id="ov-top"):
            counts = Static(id="ov-counts", classes="panel")
            counts.border_title = "Tasks"
            yield counts
            with Vertical(id="ov-right"):
                with Vertical(id="ov-throughput", classes="panel"):
                    with Horizontal(classes="spark-row"):
                        yield Static("done", classes="spark-label")
                        yield Sparkline([], id="spark-done")
                    with Horizontal(classes="spark-row"):
                        yield Static("failed", classes="spark-label")
                        yield Sparkline([], id="spark-failed")
                system = Static(id="ov-system", classes="panel")
                system.border_title = "System"
                yield system
        failing = KeyedTable(
            [
                Col(key="task", label="Task", width=24),
                Col(key="n", label="Fails", width=5),
                Col(key="last", label="Last", width=6),
                Col(key="error", label="Last error", width=8, flex=True),
            ],
            key_column="task",
            id="ov-failing",
            classes="panel",
        )
        failing.border_title = "Top failing"
        yield failing

    def on_mount(self) -> None:
        """Titles that depend on the window."""
        # Kept on the screen: load() runs in a thread and reads plain attributes only.
        self._window = self.reproq.window
        minutes = int(self._window.total_seconds() // 60)
        span = f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
        self.query_one("#ov-throughput").border_title = f"Finished per minute, last {span}"
        self.query_one("#ov-failing").border_title = f"Top failing, last {span}"

    def load(self, source: DataSource) -> OverviewData:
        """Everything the overview shows."""
        return source.overview(window=self._window)

    def show_data(self, data: OverviewData) -> None:
        """Redraw every panel."""
        self.data = data
        now = self.reproq.clock.now()
        self._show_counts(data)
        done = [float(b.succeeded) for b in data.throughput]
        failed = [float(b.failed) for b in data.throughput]
        self.query_one("#spark-done", Sparkline).data = done
        self.query_one("#spark-failed", Sparkline).data = failed
        total_ok, total_failed = int(sum(done)), int(sum(failed))
        finished = total_ok + total_failed
        minutes = max(1.0, data.window.total_seconds() / 60)
        rate = f"{finished / minutes:.1f}/min"
        failure = f"{100 * total_failed / finished:.1f}% failed" if finished else "no failures"
        self.query_one("#ov-throughput").border_subtitle = f"{finished} done · {rate} · {failure}"
        self._show_system()
        table = self.query_one("#ov-failing", KeyedTable)
        table.sync(
            [
                (
                    f.task_path,
                    [
                        f.task_path,
                        Text(str(f.failures), style="bold red", justify="right"),
                        fmt.age(now, f.last_failed_at),
                        fmt.clip(f.last_error, 60),
                    ],
                )
                for f in data.failing
            ]
        )

    def _show_counts(self, data: OverviewData) -> None:
        summary = data.summary
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(no_wrap=True, style="dim")
        scheduled = sum(q.scheduled for q in summary.queues)
        for status in TaskStatus:
            extra = f"{scheduled} later" if status is TaskStatus.READY and scheduled else ""
            # Finished totals are capped per queue: "10000+" reads as "at least".
            shown = summary.total_text(status)
            grid.add_row(fmt.status_text(status), Text(shown, style="bold"), Text(extra))
        grid.add_row("", "", "")
        oldest = summary.oldest_ready_age_seconds
        grid.add_row(
            "oldest READY",
            Text(fmt.duration(oldest)),
            Text("waiting" if oldest is not None else "none due"),
        )
        self.query_one("#ov-counts", Static).update(grid)

    def _show_system(self) -> None:
        data = self.data
        app = self.reproq
        state = app.planner.state
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="dim", no_wrap=True, min_width=8)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        db = Text(str(state), style=_STATE_STYLE[state])
        if state is LinkState.DOWN and app.last_error:
            db.append(f" {fmt.clip(app.last_error, 60)}", style="red")
        else:
            db.append(f" {app.source.label}", style="dim")
        grid.add_row("database", db)
        if data is not None:
            summary = data.summary
            workers = Text(f"{summary.workers_alive} alive")
            if summary.workers_stale:
                workers.append(f", {summary.workers_stale} stale", style="bold red")
            grid.add_row("workers", workers)
            grid.add_row(
                "beat",
                Text(f"leader {data.beat_leader}")
                if data.beat_leader
                else Text("no leader", style="yellow"),
            )
            nxt = data.next_schedule
            if nxt is None:
                grid.add_row("next", Text("no enabled schedule", style="dim"))
            else:
                grid.add_row(
                    "next", Text(f"{nxt.name} {fmt.ago(app.clock.now(), nxt.next_run_at)}")
                )
            paused = summary.paused_queues
            line = Text("none", style="dim")
            if paused:
                line = Text(f"{len(paused)}: ", style="bold yellow")
                for i, q in enumerate(paused):
                    line.append(", " if i else "")
                    line.append(q.queue, style="bold yellow")
                    if q.pause_reason:
                        line.append(f" ({q.pause_reason})", style="yellow")
            grid.add_row("paused", line)
        self.query_one("#ov-system", Static).update(grid)

    def link_changed(self) -> None:
        """The connection state changed: redraw the database line."""
        self._show_system()

    def disabled_reason(self, action: str) -> str | None:
        """Enter needs a failing task to be highlighted."""
        if action == "show_failing" and self.is_mounted:
            table = self.query_one("#ov-failing", KeyedTable)
            if table.cursor_key is None:
                return "no task failed in the window"
        return None

    def action_show_failing(self) -> None:
        """The FAILED runs of the highlighted task path."""
        key = self.query_one("#ov-failing", KeyedTable).cursor_key
        if key is not None:
            self.reproq.show_tasks(f"status:failed task:{key}")
