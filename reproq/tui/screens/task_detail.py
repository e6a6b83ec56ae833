"""Task detail: spec, timeline, every attempt's error, return value, lineage and logs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from reproq.models import TaskStatus
from reproq.ops.observe import TaskDetail, TaskRef
from reproq.tui import format as fmt
from reproq.tui.actions import (
    as_row,
    cancel_job,
    cancel_reason,
    confirm_cancel,
    confirm_replay,
    confirm_retry,
    replay_job,
    replay_reason,
    retry_job,
    retry_reason,
)
from reproq.tui.bindings import bindings_for
from reproq.tui.screens.base import DataScreen
from reproq.tui.source import DataSource, read_log_tail

__all__ = ["DetailData", "TaskDetailScreen"]


@dataclass(frozen=True, kw_only=True, slots=True)
class DetailData:
    """One run in full plus the end of its log file when that is readable here."""

    detail: TaskDetail
    log_tail: str | None


def _heading(title: str) -> Text:
    return Text(f"\n{title}", style="bold underline")


def _ref(ref: TaskRef) -> Text:
    text = Text(f"#{ref.result_id} ", style="bold")
    text.append_text(fmt.status_text(ref.status))
    text.append(f" {ref.task_path} ({ref.queue_name})")
    return text


def _grid(rows: Sequence[tuple[str, str | Text]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    for label, value in rows:
        # Data is never markup: a "[red]" in a spec must show as typed.
        grid.add_row(label, Text(value) if isinstance(value, str) else value)
    return grid


class TaskDetailScreen(DataScreen[DetailData]):
    """One task run, live: the same actions as the list, for this run."""

    SCOPE = "task_detail"
    TAB = "tasks"
    BINDINGS = bindings_for("task_detail")

    def __init__(self, result_id: int) -> None:
        super().__init__()
        self.result_id = result_id
        self.detail: TaskDetail | None = None
        self._shown: DetailData | None = None

    def compose_body(self) -> ComposeResult:
        """A title line and the scrollable body."""
        yield Static(Text(f"#{self.result_id}", style="bold"), id="detail-title")
        with VerticalScroll(id="detail-body"):
            yield Static(Text("loading…", style="dim"), id="detail")

    def on_mount(self) -> None:
        """Scroll with the keyboard."""
        self.query_one("#detail-body").focus()

    def load(self, source: DataSource) -> DetailData:
        """The run and its log tail."""
        detail = source.task(self.result_id)
        return DetailData(detail=detail, log_tail=read_log_tail(detail.logs_uri))

    def show_data(self, data: DetailData) -> None:
        """Redraw only when something changed, so the scroll position stays."""
        self.detail = data.detail
        if data == self._shown:
            return
        self._shown = data
        d = data.detail
        title = Text(f"#{d.result_id} ", style="bold")
        title.append(d.task_path, style="bold")
        title.append("  ")
        title.append_text(fmt.status_text(d.status, cancel_requested=d.cancel_requested))
        title.append(f"  attempt {d.attempts}/{d.max_attempts}  queue {d.queue_name}")
        self.query_one("#detail-title", Static).update(title)
        self.query_one("#detail", Static).update(self._render_detail(data))

    def show_error(self, message: str) -> None:
        """A run that vanished (pruned) says so in place."""
        self.query_one("#detail", Static).update(Text(message, style="red"))

    def _render_detail(self, data: DetailData) -> RenderableType:
        d = data.detail
        now = self.reproq.clock.now()
        parts: list[RenderableType] = []
        lease = "-"
        if d.leased_by and d.leased_until is not None:
            lease = f"held by {d.leased_by} until {fmt.timestamp(d.leased_until)}"
        elif d.leased_by:
            lease = f"- (last held by {d.leased_by})"
        parts.append(
            _grid(
                [
                    ("priority", str(d.priority)),
                    ("timeout", f"{d.timeout_seconds}s"),
                    ("lease", lease),
                    ("workers", ", ".join(d.worker_ids) or "-"),
                    ("lock key", d.lock_key or "-"),
                    (
                        "concurrency",
                        f"{d.concurrency_key} (limit {d.concurrency_limit})"
                        if d.concurrency_key
                        else "-",
                    ),
                    ("spec hash", d.spec_hash),
                    (
                        "cancel",
                        Text("requested", style="bold yellow") if d.cancel_requested else "-",
                    ),
                ]
            )
        )
        parts.append(_heading("Timeline"))
        timeline: list[tuple[str, str | Text]] = [
            ("enqueued", f"{fmt.timestamp(d.enqueued_at)}  ({fmt.ago(now, d.enqueued_at)})")
        ]
        if d.run_after is not None:
            timeline.append(
                ("run after", f"{fmt.timestamp(d.run_after)}  ({fmt.ago(now, d.run_after)})")
            )
        timeline += [
            ("started", fmt.timestamp(d.started_at)),
            ("last attempt", fmt.timestamp(d.last_attempted_at)),
            ("finished", fmt.timestamp(d.finished_at)),
        ]
        if d.failed_at is not None:
            timeline.append(("failed", fmt.timestamp(d.failed_at)))
        if d.expires_at is not None:
            timeline.append(("expires", fmt.timestamp(d.expires_at)))
        timeline.append(("updated", fmt.timestamp(d.updated_at)))
        parts.append(_grid(timeline))
        parts.append(_heading("Arguments"))
        parts.append(
            _grid([("args", fmt.pretty_json(d.args)), ("kwargs", fmt.pretty_json(d.kwargs))])
        )
        if d.status is TaskStatus.SUCCESSFUL or d.return_value is not None:
            parts.append(_heading("Return value"))
            parts.append(Text(fmt.pretty_json(d.return_value)))
        parts.append(_heading(f"Errors ({len(d.errors)})"))
        if not d.errors:
            parts.append(Text("none", style="dim"))
        for err in d.errors:
            line = Text(f"attempt {err.attempt if err.attempt is not None else '?'}", style="bold")
            line.append(f"  {err.kind}", style="yellow")
            if err.at:
                line.append(f"  {err.at}", style="dim")
            if err.worker_id:
                line.append(f"  on {err.worker_id}", style="dim")
            parts.append(line)
            message = (
                f"{err.exception_class}: {err.message}" if err.exception_class else err.message
            )
            parts.append(Text(f"  {message or '-'}", style="red"))
            if err.traceback:
                parts.append(Text(err.traceback.rstrip(), style="dim"))
        parts.append(_heading("Lineage"))
        parts.extend(self._lineage(d))
        if d.metadata:
            parts.append(_heading("Metadata"))
            parts.append(Text(fmt.pretty_json(dict(d.metadata))))
        parts.append(_heading("Logs"))
        if d.logs_uri:
            parts.append(Text(d.logs_uri, style="underline"))
            if data.log_tail is not None:
                parts.append(Text(data.log_tail.rstrip() or "(empty)", style="dim"))
        else:
            parts.append(Text("no logs recorded", style="dim"))
        if d.artifacts_uri:
            parts.append(Text(f"artifacts {d.artifacts_uri}", style="underline"))
        return Group(*parts)

    def _lineage(self, d: TaskDetail) -> list[RenderableType]:
        out: list[RenderableType] = []
        if d.parent is not None:
            out.append(Text("parent    ").append_text(_ref(d.parent)))
        elif d.parent_id is not None:
            out.append(Text(f"parent    #{d.parent_id} (gone)"))
        if d.replayed_from_ref is not None:
            out.append(Text("replay of ").append_text(_ref(d.replayed_from_ref)))
        elif d.replayed_from is not None:
            out.append(Text(f"replay of #{d.replayed_from} (gone)"))
        for child in d.children:
            out.append(Text("child     ").append_text(_ref(child)))
        if d.workflow is not None:
            w = d.workflow
            out.append(
                Text(
                    f"workflow  {w.workflow_id} {w.status}: {w.success_count}/"
                    f"{w.expected_count} succeeded, {w.failure_count} failed"
                )
            )
            for member in w.members:
                out.append(Text("  member  ").append_text(_ref(member)))
        elif d.chain:
            out.append(Text(f"chain     {d.workflow_id}"))
            for member in d.chain:
                mark = "→ " if member.result_id == d.result_id else "  "
                out.append(Text(f"  {mark}      ").append_text(_ref(member)))
        if d.wait_count:
            out.append(Text(f"waits for {d.wait_count} run(s)", style="blue"))
        if not out:
            out.append(Text("none (enqueued on its own)", style="dim"))
        return out

    # ---------------------------------------------------------------- actions

    def disabled_reason(self, action: str) -> str | None:
        """The same rules as the list, for this run."""
        row = as_row(self.detail) if self.detail is not None else None
        if action == "retry":
            return retry_reason(row)
        if action == "replay":
            return replay_reason(row)
        if action == "cancel":
            return cancel_reason(row)
        if action == "open_related" and self._related() is None:
            return "this run has no parent and is not a replay"
        return None

    def _related(self) -> int | None:
        d = self.detail
        if d is None:
            return None
        return d.parent_id if d.parent_id is not None else d.replayed_from

    def action_back(self) -> None:
        """Back to the list."""
        self.dismiss(None)

    def action_open_related(self) -> None:
        """Open the parent (or the replay source)."""
        related = self._related()
        if related is not None:
            self.app.push_screen(TaskDetailScreen(related))

    def action_retry(self) -> None:
        """Retry this run."""
        if self.detail is not None:
            row = as_row(self.detail)
            self.reproq.perform(retry_job(row.result_id), confirm=confirm_retry(row, brief=True))

    def action_replay(self) -> None:
        """Replay this run."""
        if self.detail is not None:
            row = as_row(self.detail)
            self.reproq.perform(replay_job(row.result_id), confirm=confirm_replay(row, brief=True))

    def action_cancel(self) -> None:
        """Cancel this run."""
        if self.detail is not None:
            row = as_row(self.detail)
            self.reproq.perform(cancel_job(row.result_id), confirm=confirm_cancel(row, brief=True))
