"""What became of each execution of a torture run: the checker's indexes over a snapshot.

Vocabulary used by the invariants (:mod:`reproq.stress.checker`):

* An **execution** is one run of a task body, recorded in the ledger by the body itself
  (start and end times come from the database clock).
* The database's **verdict** on an attempt is what ``task_runs`` says became of it: the
  final attempt of a SUCCESSFUL row succeeded; an ``errors_json`` entry for the attempt
  names how it failed (``app_error``, ``infra_error``, ``cancelled``…) or that its lease
  expired (``lease_expiry``).
* An execution is **fenced out** when its attempt's verdict is ``lease_expiry``: its
  worker stopped heartbeating (killed, SIGSTOPped past the lease, cut off from the
  database) and the attempt was taken away. Such a body may still be running, or even
  finish, while a new attempt runs elsewhere; fencing guarantees its result is discarded.
* An execution is **counted** when the database accepted its outcome (success or a
  failure kind other than ``lease_expiry``). Exclusivity (``lock_key``) and concurrency
  limits are promises about counted executions: the overlap of a fenced-out zombie
  with its replacement is exactly what fencing makes harmless, so it is not a violation
  — provided the zombie's result really was discarded, which ``single_success`` checks.
  A counted execution's interval ends at the earliest of: the body's own end, the death
  of its worker process, and the moment the database recorded the attempt's end (a
  thread executor fails an attempt at its deadline while the body may run on).
* An execution **outlived its worker** when the body recorded its end well after the
  worker process hosting it had died (a task process the worker started and nobody
  killed). That is no zombie of a live worker that fencing tames: it is a body nobody
  supervises, and it counts in the exclusivity and limit checks for as long as it ran.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from reproq.stress.snapshot import Execution, Snapshot, TaskRecord, WorkflowRecord

__all__ = [
    "FENCED_KINDS",
    "OUTLIVE_TOLERANCE",
    "SUCCESS",
    "TERMINAL",
    "Interval",
    "RunIndex",
    "label",
    "ts",
]

TERMINAL = frozenset({"SUCCESSFUL", "FAILED", "CANCELLED"})
FENCED_KINDS = frozenset({"lease_expiry"})
SUCCESS = "success"

OUTLIVE_TOLERANCE = dt.timedelta(seconds=1)
"""How long after its worker's death a body's end may still be recorded without it having
outlived the worker: a ledger write already sent, or the moment a killed task process
needs to die."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Interval:
    """When one execution really ran."""

    execution: Execution
    start: dt.datetime
    end: dt.datetime


class RunIndex:
    """Indexes over a snapshot, and the verdicts the checks share."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.facts = snapshot.facts
        self.tasks: dict[int, TaskRecord] = {t.result_id: t for t in snapshot.tasks}
        self.executions: dict[int, list[Execution]] = defaultdict(list)
        for execution in snapshot.executions:
            self.executions[execution.result_id].append(execution)
        for runs in self.executions.values():
            runs.sort(key=lambda e: (e.started_at, e.attempt))
        self.by_token: dict[str, Execution] = {e.token: e for e in snapshot.executions}
        self.by_workflow: dict[str, list[TaskRecord]] = defaultdict(list)
        for task in snapshot.tasks:
            if task.workflow_id is not None:
                self.by_workflow[task.workflow_id].append(task)
        self.workflow_of_callback: dict[int, WorkflowRecord] = {
            w.callback_result_id: w for w in snapshot.workflows if w.callback_result_id is not None
        }

    def verdict(self, task: TaskRecord, attempt: int) -> str | None:
        """What the database says became of ``attempt`` (None: it left no trace)."""
        if task.status == "SUCCESSFUL" and attempt == task.attempts:
            return SUCCESS
        kinds = [e.kind for e in task.errors if e.attempt == attempt]
        if kinds:
            return kinds[-1]
        if task.status == "RUNNING" and attempt == task.attempts:
            return "running"
        return None

    def db_end(self, task: TaskRecord, attempt: int) -> dt.datetime | None:
        """When the database recorded the end of ``attempt``, if it did."""
        if task.status == "SUCCESSFUL" and attempt == task.attempts:
            return task.finished_at
        times = [e.at for e in task.errors if e.attempt == attempt and e.at is not None]
        return times[-1] if times else None

    def counted(self, execution: Execution) -> bool:
        """Whether the database accepted this execution's outcome."""
        task = self.tasks.get(execution.result_id)
        if task is None:
            return False
        verdict = self.verdict(task, execution.attempt)
        return verdict is not None and verdict not in FENCED_KINDS

    def worker_death(self, execution: Execution) -> dt.datetime | None:
        """When the worker process hosting ``execution`` died, if it did while it ran.

        The host is the body's own process (thread executor) or the ancestor the harness
        started (a task process's worker); deaths before the body began belong to an
        earlier process that had the same pid.
        """
        exits = self.facts.process_exits
        deaths = [
            exits[pid]
            for pid in (execution.pid, *execution.ancestors)
            if pid in exits and exits[pid] >= execution.started_at
        ]
        return min(deaths, default=None)

    def outlived_worker(self, execution: Execution) -> bool:
        """Whether the body was still running well after its worker process had died."""
        death = self.worker_death(execution)
        finished = execution.finished_at
        return death is not None and finished is not None and finished > death + OUTLIVE_TOLERANCE

    def interval(self, execution: Execution) -> Interval:
        """The span during which an execution really ran (see the module docs)."""
        if self.outlived_worker(execution):
            end = execution.finished_at or self.facts.checked_at
        else:
            task = self.tasks[execution.result_id]
            ends = [
                t
                for t in (
                    execution.finished_at,
                    self.worker_death(execution),
                    self.db_end(task, execution.attempt),
                )
                if t is not None
            ]
            end = min(ends) if ends else self.facts.checked_at
        return Interval(
            execution=execution, start=execution.started_at, end=max(end, execution.started_at)
        )


def label(task: TaskRecord) -> str:
    """``task 12 (fast)``: how violation lines name a task."""
    return f"task {task.result_id} ({task.kind or task.status.lower()})"


def ts(value: dt.datetime | None) -> str:
    """A timestamp for violation lines, to the millisecond."""
    return value.isoformat(timespec="milliseconds") if value is not None else "?"
