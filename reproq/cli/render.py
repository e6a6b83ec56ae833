"""How the operations commands print: JSON documents, aligned tables, times and ages,
one task run in full (``triage inspect``) and the status overview (``reproq status``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reproq.ops.observe import StatusSummary, TaskDetail, TaskRef

__all__ = [
    "age",
    "jsonable",
    "rate",
    "render_detail",
    "render_status",
    "short",
    "table",
    "when",
]


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: dataclasses as objects, times as ISO 8601 text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


_NUMBER = re.compile(r"^(-|-?\d+(\.\d+)?\+?)$")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A compact aligned table: numbers right-aligned, text left-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [
        bool(cells) and all(_NUMBER.match(row[i]) for row in cells) for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(row) for row in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return when(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def when(value: dt.datetime | None) -> str:
    """A time in UTC to the second, ``-`` for none."""
    if value is None:
        return "-"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def age(seconds: float | None) -> str:
    """An age as a short duration (``3m12s``), ``-`` for none."""
    if seconds is None:
        return "-"
    from reproq.durations import format_duration

    # Whole seconds are precise enough for ages and keep the column narrow.
    return format_duration(round(seconds) if seconds >= 1 else round(seconds, 3))


def short(text: str | None, width: int) -> str:
    """``text`` on one line, cut to ``width`` with an ellipsis."""
    if not text:
        return "-"
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def rate(value: float) -> str:
    """A token rate per second; 0 is ``no limit``."""
    return "no limit" if value <= 0 else f"{value:g}/s"


def render_detail(d: TaskDetail) -> str:
    """A task's detail as readable text (used by ``triage inspect``)."""
    import json

    lines = [
        f"task {d.result_id}  {d.task_path}  [{d.status}]",
        f"  queue          {d.queue_name} (priority {d.priority})",
        f"  attempts       {d.attempts}/{d.max_attempts}, timeout {d.timeout_seconds}s",
        f"  enqueued       {when(d.enqueued_at)}",
    ]
    optional = [
        ("run after", when(d.run_after) if d.run_after else None),
        ("started", when(d.started_at) if d.started_at else None),
        ("last attempt", when(d.last_attempted_at) if d.last_attempted_at else None),
        ("finished", when(d.finished_at) if d.finished_at else None),
        ("failed", when(d.failed_at) if d.failed_at else None),
        ("expires", when(d.expires_at) if d.expires_at else None),
        (
            "lease",
            f"{d.leased_by} until {when(d.leased_until)}" if d.leased_by else None,
        ),
        ("cancel", "requested" if d.cancel_requested and d.status == "RUNNING" else None),
        ("lock key", d.lock_key),
        (
            "concurrency",
            f"{d.concurrency_key} (limit {d.concurrency_limit})" if d.concurrency_key else None,
        ),
        ("workers", ", ".join(d.worker_ids) if d.worker_ids else None),
        ("spec hash", d.spec_hash),
        ("logs", d.logs_uri),
        ("artifacts", d.artifacts_uri),
        ("parent", _ref(d.parent) if d.parent else (str(d.parent_id) if d.parent_id else None)),
        ("children", ", ".join(_ref(c) for c in d.children) if d.children else None),
        ("workflow", _workflow(d)),
        (
            "replayed from",
            _ref(d.replayed_from_ref)
            if d.replayed_from_ref
            else (str(d.replayed_from) if d.replayed_from else None),
        ),
        ("last error", d.last_error),
    ]
    lines += [f"  {label:<14} {value}" for label, value in optional if value]
    lines.append("  args           " + json.dumps(d.args, ensure_ascii=False))
    lines.append("  kwargs         " + json.dumps(d.kwargs, ensure_ascii=False, sort_keys=True))
    if d.return_value is not None:
        lines.append("  return         " + json.dumps(d.return_value, ensure_ascii=False))
    if d.errors:
        lines.append(f"  errors ({len(d.errors)})")
        for e in d.errors:
            head = f"    attempt {e.attempt if e.attempt is not None else '?'}: {e.kind}"
            if e.exception_class:
                head += f" {e.exception_class}"
            if e.message:
                head += f": {e.message}"
            extra = ", ".join(x for x in (e.at, e.worker_id) if x)
            if extra:
                head += f"  ({extra})"
            lines.append(head)
            if e.traceback:
                lines.extend("      " + t for t in e.traceback.rstrip().splitlines())
    return "\n".join(lines)


def _ref(ref: TaskRef) -> str:
    return f"{ref.result_id} ({ref.task_path}, {ref.status})"


def _workflow(d: TaskDetail) -> str | None:
    if d.workflow is not None:
        w = d.workflow
        text = (
            f"{w.workflow_id} {w.status}: {w.success_count}/{w.expected_count} succeeded, "
            f"{w.failure_count} failed"
        )
        if w.callback_result_id:
            text += f", callback {w.callback_result_id}"
        return text
    if d.workflow_id is not None:
        steps = " -> ".join(f"{r.result_id} [{r.status}]" for r in d.chain)
        return f"{d.workflow_id} chain: {steps}" if steps else str(d.workflow_id)
    return None


def render_status(s: StatusSummary) -> str:
    """``reproq status`` as text: a queue table, then workers and limits."""
    from reproq.ops.observe import format_count

    cap = s.count_cap
    out: list[str] = []
    if not s.queues:
        out.append("no queues yet (no task runs, pauses, limits or workers)")
    else:
        rows: list[list[Any]] = []
        for qi in s.queues:
            rows.append(
                [
                    qi.queue,
                    qi.ready,
                    qi.scheduled,
                    qi.waiting,
                    qi.running,
                    format_count(qi.failed, cap),
                    format_count(qi.successful, cap),
                    format_count(qi.cancelled, cap),
                    age(qi.oldest_ready_age_seconds),
                    ("paused: " + qi.pause_reason if qi.pause_reason else "paused")
                    if qi.paused
                    else "",
                ]
            )
        totals = s.totals
        rows.append(
            [
                "TOTAL",
                sum(qi.ready for qi in s.queues),
                sum(qi.scheduled for qi in s.queues),
                totals["WAITING"],
                totals["RUNNING"],
                s.total_text("FAILED"),
                s.total_text("SUCCESSFUL"),
                s.total_text("CANCELLED"),
                age(s.oldest_ready_age_seconds),
                "",
            ]
        )
        out.append(
            table(
                [
                    "QUEUE",
                    "READY",
                    "SCHEDULED",
                    "WAITING",
                    "RUNNING",
                    "FAILED",
                    "SUCCESSFUL",
                    "CANCELLED",
                    "OLDEST READY",
                    "",
                ],
                rows,
            )
        )
    out.append("")
    out.append(f"workers: {s.workers_alive} alive, {s.workers_stale} stale")
    if s.workers:
        out.append(
            table(
                ["WORKER", "HOST", "QUEUES", "RUNNING", "LAST SEEN", ""],
                [
                    [
                        w.worker_id,
                        w.hostname,
                        ",".join(w.queues) or "-",
                        w.running,
                        age(w.last_seen_seconds) + " ago",
                        "stale" if w.stale else "",
                    ]
                    for w in s.workers
                ],
            )
        )
    limited = [lim for lim in s.limits if not lim.unlimited]
    if limited:
        out.append("")
        out.append(
            "rate limits: "
            + ", ".join(
                f"{lim.key} {rate(lim.tokens_per_second)} burst {lim.burst_size}" for lim in limited
            )
        )
    return "\n".join(out)
