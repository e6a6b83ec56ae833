"""Read-only views of the queue: what ``reproq status``, the TUI and metrics show.

This is the one read surface: callers write ``observe.list_tasks(...)`` and need not know
which module holds what. The values are in :mod:`reproq.ops.read_models`, the filter
language in :mod:`reproq.ops.task_filter`, the reads of the queue's state in
:mod:`reproq.ops.status_reads` and the reads of task runs in :mod:`reproq.ops.task_reads`.

Every function takes an open connection and only reads. They are built to stay cheap
on a table with millions of finished rows:

- READY, RUNNING and WAITING rows are counted exactly, through their partial indexes;
  the cost grows with the number of *active* rows only.
- SUCCESSFUL, FAILED and CANCELLED rows are counted per queue up to ``count_cap`` rows
  (a value above the cap means "more than the cap"; :func:`format_count` renders it as
  ``10000+``). Pass ``count_cap=None`` for exact counts, which read every finished row.
- Windowed figures (done in the last hour, throughput, top failing) walk the
  ``finished_at`` / ``failed_at`` indexes over the window only.

Ages are measured against the database's clock, so a skewed client clock cannot make
them negative.
"""

from __future__ import annotations

from reproq.ops.read_models import (
    AttemptError,
    BeatStatus,
    ConcurrencyUse,
    FailingTask,
    QueueInfo,
    RateLimit,
    ScheduleInfo,
    StatusSummary,
    TaskDetail,
    TaskOrder,
    TaskRef,
    TaskRow,
    ThroughputBucket,
    TriageRow,
    WorkerInfo,
    WorkflowInfo,
    format_count,
)
from reproq.ops.status_reads import (
    DEFAULT_COUNT_CAP,
    DEFAULT_STALE_AFTER,
    DEFAULT_WINDOW,
    beat_status,
    list_limits,
    list_queues,
    list_schedules,
    list_workers,
    status_summary,
    throughput,
    top_failing,
)
from reproq.ops.task_filter import TaskFilter, glob_to_like, parse_filter
from reproq.ops.task_reads import get_task, list_tasks, triage_list

__all__ = [
    "DEFAULT_COUNT_CAP",
    "DEFAULT_STALE_AFTER",
    "DEFAULT_WINDOW",
    "AttemptError",
    "BeatStatus",
    "ConcurrencyUse",
    "FailingTask",
    "QueueInfo",
    "RateLimit",
    "ScheduleInfo",
    "StatusSummary",
    "TaskDetail",
    "TaskFilter",
    "TaskOrder",
    "TaskRef",
    "TaskRow",
    "ThroughputBucket",
    "TriageRow",
    "WorkerInfo",
    "WorkflowInfo",
    "beat_status",
    "format_count",
    "get_task",
    "glob_to_like",
    "list_limits",
    "list_queues",
    "list_schedules",
    "list_tasks",
    "list_workers",
    "parse_filter",
    "status_summary",
    "throughput",
    "top_failing",
    "triage_list",
]
