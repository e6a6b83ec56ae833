"""Queues: per-queue counts, oldest READY, pause state and limits; pause and resume."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from reproq.ops.observe import DEFAULT_COUNT_CAP, QueueInfo, format_count
from reproq.tui import format as fmt
from reproq.tui.bindings import bindings_for
from reproq.tui.screens.base import DataScreen
from reproq.tui.source import DataSource
from reproq.tui.widgets.keyed_table import Cell, Col, KeyedTable

__all__ = ["QueuesScreen"]


def _num(value: int, style: str = "") -> Text:
    return Text(str(value) if value else "·", style=style if value else "dim", justify="right")


class QueuesScreen(DataScreen[list[QueueInfo]]):
    """Every known queue, keyed by name."""

    SCOPE = "queues"
    TAB = "queues"
    BINDINGS = bindings_for("queues")

    def __init__(self) -> None:
        super().__init__()
        self.queues: dict[str, QueueInfo] = {}

    def compose_body(self) -> ComposeResult:
        """The table and a detail line for the highlighted queue."""
        yield KeyedTable(
            [
                Col(key="queue", label="Queue", width=12, flex=True),
                Col(key="ready", label="Ready", width=6),
                Col(key="later", label="Later", width=5),
                Col(key="wait", label="Wait", width=5),
                Col(key="run", label="Run", width=4),
                Col(key="failed", label="Failed", width=6),
                Col(key="done", label="Done/h", width=6),
                Col(key="oldest", label="Oldest", width=6),
                Col(key="state", label="State", width=6),
            ],
            key_column="queue",
            id="queues",
        )
        yield Static("", id="queue-detail")

    def on_mount(self) -> None:
        """Start in the table."""
        self.query_one("#queues", KeyedTable).focus()

    def load(self, source: DataSource) -> list[QueueInfo]:
        """Every queue."""
        return source.queues()

    def show_data(self, data: list[QueueInfo]) -> None:
        """Update rows in place."""
        self.queues = {q.queue: q for q in data}
        self.query_one("#queues", KeyedTable).sync([(q.queue, self._cells(q)) for q in data])
        self._show_detail()

    def _cells(self, q: QueueInfo) -> list[Cell]:
        state = Text("paused", style="bold yellow") if q.paused else Text("active", style="dim")
        return [
            q.queue,
            _num(q.ready, "bold cyan"),
            _num(q.scheduled, "cyan"),
            _num(q.waiting, "blue"),
            _num(q.running, "bold yellow"),
            Text(
                format_count(q.failed, DEFAULT_COUNT_CAP),
                style="bold red" if q.failed else "dim",
                justify="right",
            ),
            _num(q.succeeded_in_window + q.failed_in_window + q.cancelled_in_window),
            Text(fmt.duration(q.oldest_ready_age_seconds), justify="right"),
            state,
        ]

    @property
    def current(self) -> QueueInfo | None:
        """The highlighted queue."""
        key = self.query_one("#queues", KeyedTable).cursor_key
        return self.queues.get(key) if key is not None else None

    def _show_detail(self) -> None:
        q = self.current
        text = Text()
        if q is not None:
            now = self.reproq.clock.now()
            text.append(q.queue, style="bold")
            if q.paused:
                text.append(f"  paused {fmt.age(now, q.paused_at)} ago", style="bold yellow")
                if q.pause_reason:
                    text.append(f": {q.pause_reason}", style="yellow")
            text.append(
                f"\nfinished: {format_count(q.successful, DEFAULT_COUNT_CAP)} ok, "
                f"{format_count(q.failed, DEFAULT_COUNT_CAP)} failed, "
                f"{format_count(q.cancelled, DEFAULT_COUNT_CAP)} cancelled · last hour "
                f"{q.succeeded_in_window} ok / {q.failed_in_window} failed",
                style="dim",
            )
            limits = []
            if q.rate_limit is not None and not q.rate_limit.unlimited:
                limits.append(
                    f"rate {q.rate_limit.tokens_per_second:g}/s burst {q.rate_limit.burst_size}"
                )
            limits += [f"{c.key} {c.running}/{c.limit or '∞'} running" for c in q.concurrency]
            text.append("\nlimits: " + ("; ".join(limits) if limits else "none"), style="dim")
        self.query_one("#queue-detail", Static).update(text)

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_detail()
        self.changed()

    def disabled_reason(self, action: str) -> str | None:
        """Pause needs an active queue, resume a paused one."""
        if not self.is_mounted:
            return None
        q = self.current
        if q is None:
            return "no queue is highlighted"
        if action == "pause" and q.paused:
            return f"queue {q.queue} is already paused"
        if action == "resume" and not q.paused:
            return f"queue {q.queue} is not paused"
        return None

    def action_show_tasks(self) -> None:
        """The runs of the highlighted queue."""
        q = self.current
        if q is not None:
            self.reproq.show_tasks(f"queue:{q.queue}")

    def action_pause(self) -> None:
        """Pause the highlighted queue, with an optional reason."""
        q = self.current
        if q is None:
            return
        name = q.queue

        def job(source: DataSource, reason: str) -> str:
            state = source.pause_queue(name, reason or None)
            return f"paused queue {state.queue}" + (f": {state.reason}" if state.reason else "")

        self.reproq.perform(
            job,
            confirm=(
                f"Pause queue {name}?",
                f"Workers stop claiming from {name}; running tasks finish. "
                f"{q.ready} READY run(s) wait until it is resumed.",
                "Pause",
            ),
            ask="reason (optional)",
        )

    def action_resume(self) -> None:
        """Resume the highlighted queue (no confirmation: it only lets work flow)."""
        q = self.current
        if q is None:
            return
        name = q.queue

        def job(source: DataSource, _answer: str) -> str:
            return f"resumed queue {source.resume_queue(name).queue}"

        self.reproq.perform(job)
