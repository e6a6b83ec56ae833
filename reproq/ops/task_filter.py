"""The filter language of task listings: ``status:failed queue:emails age:>1h``.

:func:`parse_filter` turns what an operator types (in the TUI's Tasks screen) into a
:class:`TaskFilter`; :func:`glob_to_like` turns its task-path globs into LIKE patterns
for the statements that apply it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from reproq.errors import UsageError
from reproq.models import TaskStatus

__all__ = ["TaskFilter", "glob_to_like", "parse_filter"]


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskFilter:
    """Which task runs a listing shows; empty fields do not filter.

    ``task_path`` is a glob (``billing.*``, ``*.send_?``); ``worker_id`` matches the
    current lease holder or any worker that ever claimed the row; ages are measured from
    ``enqueued_at`` (``min_age`` 1h = enqueued more than an hour ago).
    """

    statuses: tuple[TaskStatus, ...] = ()
    queues: tuple[str, ...] = ()
    task_path: str | None = None
    worker_id: str | None = None
    result_ids: tuple[int, ...] = ()
    min_age: dt.timedelta | None = None
    max_age: dt.timedelta | None = None

    @property
    def is_empty(self) -> bool:
        """True when the filter lets every row through."""
        return self == TaskFilter()


def glob_to_like(pattern: str) -> str:
    """A shell-style glob (``*`` any run, ``?`` one character) as a LIKE pattern."""
    out: list[str] = []
    for ch in pattern:
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


_FILTER_FIELDS = ("status", "queue", "task", "worker", "id", "age")
_AGE = re.compile(r"^(>=|<=|>|<)?(.+)$")


def parse_filter(text: str) -> TaskFilter:
    """Parse the small filter language of the Tasks screen into a :class:`TaskFilter`.

    Space-separated ``field:value`` terms; comma-separated values mean "any of"::

        status:failed,running queue:emails task:billing.* worker:w1 id:12,13 age:>1h

    ``age:>1h`` means enqueued more than an hour ago, ``age:<10m`` less than ten minutes
    ago. A word without a field matches task paths containing it. Raises
    :class:`UsageError` naming the bad term.
    """
    statuses: list[TaskStatus] = []
    queues: list[str] = []
    ids: list[int] = []
    task_path: str | None = None
    worker: str | None = None
    min_age: dt.timedelta | None = None
    max_age: dt.timedelta | None = None
    for term in text.split():
        name, sep, value = term.partition(":")
        if not sep:
            if task_path is not None:
                raise UsageError(f"filter {term!r}: a task path pattern is already given")
            task_path = f"*{term}*"
            continue
        name = name.lower()
        if name not in _FILTER_FIELDS:
            raise UsageError(
                f"unknown filter field {name!r} in {term!r} (known: {', '.join(_FILTER_FIELDS)})"
            )
        if not value:
            raise UsageError(f"filter {term!r} has no value")
        if name == "status":
            for item in value.split(","):
                try:
                    statuses.append(TaskStatus(item.upper()))
                except ValueError:
                    known = ", ".join(s.lower() for s in TaskStatus)
                    raise UsageError(
                        f"unknown status {item!r} in {term!r} (known: {known})"
                    ) from None
        elif name == "queue":
            queues.extend(v for v in value.split(",") if v)
        elif name == "task":
            if task_path is not None:
                raise UsageError(f"filter {term!r}: a task path pattern is already given")
            task_path = value
        elif name == "worker":
            if worker is not None:
                raise UsageError(f"filter {term!r}: a worker is already given")
            worker = value
        elif name == "id":
            for item in value.split(","):
                try:
                    number = int(item.lstrip("#"))
                except ValueError:
                    raise UsageError(f"filter {term!r}: {item!r} is not a task id") from None
                if number < 1:
                    raise UsageError(f"filter {term!r}: {item!r} is not a task id")
                ids.append(number)
        else:
            op, amount = _parse_age(term, value)
            if op in (">", ">="):
                min_age = amount
            else:
                max_age = amount
    return TaskFilter(
        statuses=tuple(dict.fromkeys(statuses)),
        queues=tuple(dict.fromkeys(queues)),
        task_path=task_path,
        worker_id=worker,
        result_ids=tuple(dict.fromkeys(ids)),
        min_age=min_age,
        max_age=max_age,
    )


def _parse_age(term: str, value: str) -> tuple[str, dt.timedelta]:
    from reproq.durations import DurationError, parse_duration

    match = _AGE.match(value)
    assert match is not None  # the pattern accepts any non-empty text
    op = match.group(1) or ">"
    try:
        seconds = parse_duration(match.group(2))
    except DurationError as exc:
        raise UsageError(f"filter {term!r}: {exc} (write age:>1h or age:<10m)") from None
    return op, dt.timedelta(seconds=seconds)
