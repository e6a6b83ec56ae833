"""The checks over time intervals: exclusive keys, concurrency limits, twin attempts and
bodies that outlived their worker.

Each function returns the violation lines it found (and, for the key checks, how many
intervals it looked at); :mod:`reproq.stress.checker` turns them into invariant results.
Which executions take part, and over which interval, is :mod:`reproq.stress.verdicts`'s.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence

from reproq.stress.snapshot import Execution, TaskRecord
from reproq.stress.verdicts import Interval, RunIndex, label, ts

__all__ = [
    "concurrency_overflows",
    "lock_key_overlaps",
    "orphaned_executions",
    "twin_attempt_overlaps",
]


def _intervals_by(
    run: RunIndex, key_of: Callable[[TaskRecord], str | None]
) -> dict[str, list[Interval]]:
    """The intervals of the executions a key's promise is about, grouped by key: the
    counted ones, and those that outlived their worker."""
    groups: dict[str, list[Interval]] = defaultdict(list)
    for execution in run.snapshot.executions:
        task = run.tasks.get(execution.result_id)
        if task is None:
            continue
        key = key_of(task)
        if key is None or not (run.counted(execution) or run.outlived_worker(execution)):
            continue
        groups[key].append(run.interval(execution))
    for intervals in groups.values():
        intervals.sort(key=lambda i: (i.start, i.end))
    return groups


def _describe(interval: Interval) -> str:
    e = interval.execution
    return (
        f"task {e.result_id} attempt {e.attempt} on {e.worker_id} "
        f"[{ts(interval.start)} - {ts(interval.end)}]"
    )


def lock_key_overlaps(run: RunIndex) -> tuple[list[str], int]:
    """Pairs of executions of one ``lock_key`` that ran at once; and how many were checked."""
    lines: list[str] = []
    groups = _intervals_by(run, lambda t: t.lock_key)
    for key, intervals in sorted(groups.items()):
        latest: Interval | None = None
        for interval in intervals:
            if latest is not None and interval.start < latest.end:
                lines.append(
                    f"lock_key {key!r}: {_describe(latest)} overlaps {_describe(interval)}"
                )
            if latest is None or interval.end > latest.end:
                latest = interval
    return lines, sum(len(v) for v in groups.values())


def concurrency_overflows(run: RunIndex) -> tuple[list[str], int]:
    """Moments a ``concurrency_key`` ran more executions than its limit; and how many were
    checked."""
    lines: list[str] = []
    groups = _intervals_by(run, lambda t: t.concurrency_key)
    for key, intervals in sorted(groups.items()):
        active: list[tuple[dt.datetime, int]] = []  # heap of (end, index)
        for index, interval in enumerate(intervals):
            while active and active[0][0] <= interval.start:
                heapq.heappop(active)
            heapq.heappush(active, (interval.end, index))
            task = run.tasks[interval.execution.result_id]
            limit = task.concurrency_limit
            if limit > 0 and len(active) > limit:
                others = ", ".join(
                    f"{intervals[i].execution.result_id}" for _, i in sorted(active) if i != index
                )
                lines.append(
                    f"concurrency_key {key!r} (limit {limit}): {len(active)} at once at "
                    f"{ts(interval.start)} — {_describe(interval)} alongside tasks {others}"
                )
    return lines, sum(len(v) for v in groups.values())


def twin_attempt_overlaps(
    run: RunIndex, task: TaskRecord, executions: Sequence[Execution]
) -> list[str]:
    """A counted attempt of ``task`` that executed twice at once."""
    lines: list[str] = []
    by_attempt: dict[int, list[Execution]] = defaultdict(list)
    for execution in executions:
        by_attempt[execution.attempt].append(execution)
    for attempt, same in by_attempt.items():
        if len(same) < 2 or not run.counted(same[0]):
            continue
        intervals = sorted((run.interval(e) for e in same), key=lambda i: i.start)
        for first, second in itertools.pairwise(intervals):
            if second.start < first.end:
                lines.append(
                    f"{label(task)}: attempt {attempt} ran twice at once, on "
                    f"{first.execution.worker_id} (pid {first.execution.pid}) and "
                    f"{second.execution.worker_id} (pid {second.execution.pid})"
                )
    return lines


def orphaned_executions(run: RunIndex) -> tuple[list[str], int]:
    """Executions that ran on after their worker process died; and how many executions
    had their worker die while they ran (or before they recorded an end)."""
    lines: list[str] = []
    checked = 0
    for execution in run.snapshot.executions:
        death = run.worker_death(execution)
        if death is None or (execution.finished_at is not None and execution.finished_at < death):
            continue  # the worker lived on after the body ended
        checked += 1
        if run.outlived_worker(execution):
            lines.append(
                f"task {execution.result_id} attempt {execution.attempt} (pid "
                f"{execution.pid}) ended at {ts(execution.finished_at)}, after its worker "
                f"{execution.worker_id} died at {ts(death)}"
            )
    return lines, checked
