"""How values look on screen: ages, timestamps, counts and task states."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from rich.text import Text

from reproq.models import TaskStatus

__all__ = [
    "STATUS_STYLES",
    "age",
    "ago",
    "clip",
    "duration",
    "pretty_json",
    "status_text",
    "timestamp",
]

STATUS_STYLES: dict[TaskStatus, str] = {
    TaskStatus.READY: "bold cyan",
    TaskStatus.RUNNING: "bold yellow",
    TaskStatus.WAITING: "blue",
    TaskStatus.SUCCESSFUL: "green",
    TaskStatus.FAILED: "bold red",
    TaskStatus.CANCELLED: "magenta",
}
"""One colour per task state, the same on every screen."""


def duration(seconds: float | None) -> str:
    """A compact span: ``4s``, ``12m``, ``3h05m``, ``2d4h`` (``-`` for None)."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def age(now: dt.datetime, then: dt.datetime | None) -> str:
    """How long ago ``then`` was, compactly (``-`` for None)."""
    if then is None:
        return "-"
    return duration((now - then).total_seconds())


def ago(now: dt.datetime, then: dt.datetime | None) -> str:
    """``3m ago`` / ``in 4m`` relative to ``now`` (``never`` for None)."""
    if then is None:
        return "never"
    delta = (then - now).total_seconds()
    if delta > 0:
        return f"in {duration(delta)}"
    return f"{duration(-delta)} ago"


def timestamp(value: dt.datetime | None) -> str:
    """An instant in UTC to the second (``-`` for None)."""
    if value is None:
        return "-"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def status_text(status: TaskStatus | str, *, cancel_requested: bool = False) -> Text:
    """A task state in its colour; a RUNNING row asked to stop reads ``RUNNING!``."""
    state = TaskStatus(status)
    label = str(state) + ("!" if cancel_requested and state is TaskStatus.RUNNING else "")
    return Text(label, style=STATUS_STYLES[state])


def clip(text: str | None, width: int) -> str:
    """The first line of ``text`` cut to ``width`` characters with an ellipsis."""
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


def pretty_json(value: Any, *, inline: int = 60) -> str:
    """JSON for people: on one line when it fits in ``inline`` characters, else indented
    (sorted keys; values JSON cannot hold shown as text)."""
    flat = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    if len(flat) <= inline:
        return flat
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
