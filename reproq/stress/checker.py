"""The invariants a torture run must keep, checked from a :class:`Snapshot` alone.

:func:`check` is a pure function: task rows, ledger executions, workflow rows and the
harness's facts in, one :class:`InvariantResult` per invariant out. No database, no
clock, so the unit tests feed it hand-made violations.

Vocabulary used below:

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
  A counted execution's interval ends at the earliest of: the body's own end, its
  process's death, and the moment the database recorded the attempt's end (a thread
  executor fails an attempt at its deadline while the body may run on).
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from reproq.stress.snapshot import Execution, Snapshot, TaskRecord, WorkflowRecord

__all__ = ["INVARIANTS", "InvariantResult", "check", "evidence", "summary"]

MAX_DETAILS = 20
"""Violations listed per invariant; the rest are counted."""

TERMINAL = frozenset({"SUCCESSFUL", "FAILED", "CANCELLED"})
FENCED_KINDS = frozenset({"lease_expiry"})
_SUCCESS = "success"

INVARIANTS: Mapping[str, str] = {
    "no_task_lost": (
        "every enqueued task exists and is terminal or legitimately pending "
        "(retry not yet due, WAITING on an unfinished parent)"
    ),
    "single_success": (
        "at most one successful completion per task: the stored result comes from the "
        "final attempt of the worker that held it, never from a fenced-out attempt"
    ),
    "lock_key_exclusive": "no two counted executions of one lock_key overlap in time",
    "concurrency_limit": "never more counted executions of a concurrency_key than its limit",
    "attempts_bounded": "attempts never exceed max_attempts, in the row or in the ledger",
    "workflows_consistent": (
        "chain children run only after their parent succeeded; a chord callback runs only "
        "after every member succeeded; a failed parent or member fails what waits on it"
    ),
    "schedule_fires_once": "each (schedule, fire time) was enqueued at most once",
    "cancel_final": (
        "no new attempt of a cancelled task starts after the cancel, and it ends in a "
        "terminal state"
    ),
    "nothing_left_running": "no task is RUNNING after the workers shut down",
    "workload_executed": (
        "the ledger recorded executions of the workload (a run that executed nothing "
        "proves nothing)"
    ),
    "processes_survive": (
        "no worker or beat exited on its own: faults (a terminated connection, a database "
        "restart, a stalled table) are ridden out, not fatal"
    ),
}
"""Every invariant's name and what it promises, in report order."""


@dataclass(frozen=True, kw_only=True, slots=True)
class InvariantResult:
    """Whether one invariant held, with the violations found."""

    name: str
    ok: bool
    checked: int = 0
    """How many items (tasks, executions, keys…) the check looked at."""
    details: tuple[str, ...] = ()
    """One line per violation (at most :data:`MAX_DETAILS`, then a count of the rest)."""

    @property
    def description(self) -> str:
        """What the invariant promises."""
        return INVARIANTS.get(self.name, "")


@dataclass(frozen=True, kw_only=True, slots=True)
class _Interval:
    execution: Execution
    start: dt.datetime
    end: dt.datetime


class _Run:
    """Indexes over a snapshot, shared by the checks."""

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
            return _SUCCESS
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

    def interval(self, execution: Execution) -> _Interval:
        """The span during which a counted execution really ran (see module docs)."""
        task = self.tasks[execution.result_id]
        ends = [
            t
            for t in (
                execution.finished_at,
                self.facts.process_exits.get(execution.pid),
                self.db_end(task, execution.attempt),
            )
            if t is not None
        ]
        end = min(ends) if ends else self.facts.checked_at
        return _Interval(
            execution=execution, start=execution.started_at, end=max(end, execution.started_at)
        )


class _Findings:
    """Collects violation lines for one invariant."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def result(self, name: str, checked: int) -> InvariantResult:
        shown = self.lines[:MAX_DETAILS]
        if len(self.lines) > MAX_DETAILS:
            shown.append(f"... and {len(self.lines) - MAX_DETAILS} more")
        return InvariantResult(name=name, ok=not self.lines, checked=checked, details=tuple(shown))


def check(snapshot: Snapshot) -> list[InvariantResult]:
    """Check every invariant of :data:`INVARIANTS` against ``snapshot``, in that order."""
    run = _Run(snapshot)
    checks: dict[str, Callable[[_Run], InvariantResult]] = {
        "no_task_lost": _no_task_lost,
        "single_success": _single_success,
        "lock_key_exclusive": _lock_key_exclusive,
        "concurrency_limit": _concurrency_limit,
        "attempts_bounded": _attempts_bounded,
        "workflows_consistent": _workflows_consistent,
        "schedule_fires_once": _schedule_fires_once,
        "cancel_final": _cancel_final,
        "nothing_left_running": _nothing_left_running,
        "workload_executed": _workload_executed,
        "processes_survive": _processes_survive,
    }
    return [checks[name](run) for name in INVARIANTS]


def _label(task: TaskRecord) -> str:
    return f"task {task.result_id} ({task.kind or task.status.lower()})"


def _ts(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="milliseconds") if value is not None else "?"


# ---------------------------------------------------------------- no_task_lost


def _parents_done(run: _Run, task: TaskRecord) -> tuple[bool, str]:
    """Whether everything ``task`` waits on is terminal, and a description of it."""
    if task.parent_id is not None:
        parent = run.tasks.get(task.parent_id)
        if parent is None:
            return True, f"parent {task.parent_id} is gone"
        return parent.status in TERMINAL, f"parent {parent.result_id} is {parent.status}"
    members = _chord_members_of_callback(run, task)
    if members is not None:
        open_members = [m for m in members if m.status not in TERMINAL]
        statuses = sorted({m.status for m in members})
        return not open_members, f"chord members are {'/'.join(statuses) or 'missing'}"
    return True, "it waits on nothing"


def _chord_members_of_callback(run: _Run, task: TaskRecord) -> list[TaskRecord] | None:
    workflow = run.workflow_of_callback.get(task.result_id)
    return _members(run, workflow) if workflow is not None else None


def _members(run: _Run, workflow: WorkflowRecord) -> list[TaskRecord]:
    return [
        t
        for t in run.by_workflow.get(workflow.workflow_id, ())
        if t.result_id != workflow.callback_result_id
    ]


def _no_task_lost(run: _Run) -> InvariantResult:
    found = _Findings()
    quiesced = run.facts.quiesced_at
    for result_id in sorted(run.facts.enqueued_ids - run.tasks.keys()):
        found.add(f"task {result_id} was enqueued but its row is gone")
    for task in run.snapshot.tasks:
        if task.status in TERMINAL or task.status == "RUNNING":
            continue  # RUNNING rows are nothing_left_running's business
        if task.status == "READY":
            if quiesced is None:
                found.add(
                    f"{_label(task)}: still READY (due {_ts(task.run_after or task.enqueued_at)})"
                    " when the drain gave up"
                )
                continue
            due = task.run_after or task.enqueued_at
            became_ready_later = task.updated_at is not None and task.updated_at > quiesced
            if (due is not None and due > quiesced) or became_ready_later:
                continue  # a retry in backoff, or made READY after the queue drained
            found.add(
                f"{_label(task)}: READY and due since {_ts(due)}, yet not picked up "
                f"while the queue drained (quiesced at {_ts(quiesced)})"
            )
        elif task.status == "WAITING":
            done, why = _parents_done(run, task)
            if done:
                found.add(f"{_label(task)}: WAITING forever: {why}")
        else:
            found.add(f"{_label(task)}: unknown status {task.status!r}")
    return found.result("no_task_lost", len(run.snapshot.tasks))


# ---------------------------------------------------------------- single_success


def _single_success(run: _Run) -> InvariantResult:
    found = _Findings()
    for task in run.snapshot.tasks:
        executions = run.executions.get(task.result_id, [])
        if task.status == "SUCCESSFUL":
            _check_stored_result(run, task, found)
            if task.kind == "always_fail" or task.kind.endswith("_fail"):
                found.add(f"{_label(task)}: SUCCESSFUL although its body always raises")
        for execution in executions:
            if execution.outcome != "ok" or execution.attempt >= task.attempts:
                continue
            if run.verdict(task, execution.attempt) is None:
                found.add(
                    f"{_label(task)}: attempt {execution.attempt} on {execution.worker_id} "
                    f"succeeded and left no trace, yet the task ran again as attempt "
                    f"{task.attempts} (a completion was lost or counted twice)"
                )
        _check_twin_attempts(run, task, executions, found)
    return found.result("single_success", len(run.snapshot.tasks))


def _check_stored_result(run: _Run, task: TaskRecord, found: _Findings) -> None:
    if task.return_token is None:
        if task.kind:  # workload tasks always return a token
            found.add(f"{_label(task)}: SUCCESSFUL without the token its body returns")
        return
    source = run.by_token.get(task.return_token)
    if source is None or source.result_id != task.result_id:
        found.add(f"{_label(task)}: stored result matches no execution of this task")
        return
    if source.attempt != task.attempts:
        verdict = run.verdict(task, source.attempt)
        found.add(
            f"{_label(task)}: stored result comes from attempt {source.attempt} on "
            f"{source.worker_id} (verdict {verdict or 'none'}), not the final attempt "
            f"{task.attempts}: a fenced-out attempt finished the task"
        )
    elif task.worker_ids and source.worker_id != task.worker_ids[-1]:
        found.add(
            f"{_label(task)}: stored result comes from {source.worker_id}, but attempt "
            f"{task.attempts} was claimed by {task.worker_ids[-1]}"
        )
    if source.outcome not in (None, "ok"):
        found.add(
            f"{_label(task)}: stored result comes from an execution that ended {source.outcome}"
        )


def _check_twin_attempts(
    run: _Run, task: TaskRecord, executions: Sequence[Execution], found: _Findings
) -> None:
    by_attempt: dict[int, list[Execution]] = defaultdict(list)
    for execution in executions:
        by_attempt[execution.attempt].append(execution)
    for attempt, same in by_attempt.items():
        if len(same) < 2 or not run.counted(same[0]):
            continue
        intervals = sorted((run.interval(e) for e in same), key=lambda i: i.start)
        for first, second in itertools.pairwise(intervals):
            if second.start < first.end:
                found.add(
                    f"{_label(task)}: attempt {attempt} ran twice at once, on "
                    f"{first.execution.worker_id} (pid {first.execution.pid}) and "
                    f"{second.execution.worker_id} (pid {second.execution.pid})"
                )


# ---------------------------------------------------------------- keys


def _counted_intervals_by(
    run: _Run, key_of: Callable[[TaskRecord], str | None]
) -> dict[str, list[_Interval]]:
    groups: dict[str, list[_Interval]] = defaultdict(list)
    for execution in run.snapshot.executions:
        task = run.tasks.get(execution.result_id)
        if task is None:
            continue
        key = key_of(task)
        if key is None or not run.counted(execution):
            continue
        groups[key].append(run.interval(execution))
    for intervals in groups.values():
        intervals.sort(key=lambda i: (i.start, i.end))
    return groups


def _describe(interval: _Interval) -> str:
    e = interval.execution
    return (
        f"task {e.result_id} attempt {e.attempt} on {e.worker_id} "
        f"[{_ts(interval.start)} - {_ts(interval.end)}]"
    )


def _lock_key_exclusive(run: _Run) -> InvariantResult:
    found = _Findings()
    groups = _counted_intervals_by(run, lambda t: t.lock_key)
    for key, intervals in sorted(groups.items()):
        latest: _Interval | None = None
        for interval in intervals:
            if latest is not None and interval.start < latest.end:
                found.add(f"lock_key {key!r}: {_describe(latest)} overlaps {_describe(interval)}")
            if latest is None or interval.end > latest.end:
                latest = interval
    return found.result("lock_key_exclusive", sum(len(v) for v in groups.values()))


def _concurrency_limit(run: _Run) -> InvariantResult:
    found = _Findings()
    groups = _counted_intervals_by(run, lambda t: t.concurrency_key)
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
                found.add(
                    f"concurrency_key {key!r} (limit {limit}): {len(active)} at once at "
                    f"{_ts(interval.start)} — {_describe(interval)} alongside tasks {others}"
                )
    return found.result("concurrency_limit", sum(len(v) for v in groups.values()))


# ---------------------------------------------------------------- attempts


def _attempts_bounded(run: _Run) -> InvariantResult:
    found = _Findings()
    for task in run.snapshot.tasks:
        if task.attempts > task.max_attempts:
            found.add(
                f"{_label(task)}: attempts {task.attempts} > max_attempts {task.max_attempts}"
            )
        executions = run.executions.get(task.result_id, [])
        attempts = {e.attempt for e in executions}
        over = sorted(a for a in attempts if a > task.max_attempts or a < 1)
        if over:
            found.add(
                f"{_label(task)}: executed as attempt {over} with max_attempts {task.max_attempts}"
            )
        if len(attempts) > task.max_attempts:
            found.add(
                f"{_label(task)}: {len(attempts)} distinct attempts executed, "
                f"max_attempts {task.max_attempts}"
            )
    return found.result("attempts_bounded", len(run.snapshot.tasks))


# ---------------------------------------------------------------- workflows


def _first_start(run: _Run, task: TaskRecord) -> Execution | None:
    executions = run.executions.get(task.result_id)
    return executions[0] if executions else None


def _has_error(task: TaskRecord, kind: str) -> bool:
    return any(e.kind == kind for e in task.errors)


def _workflows_consistent(run: _Run) -> InvariantResult:
    found = _Findings()
    checked = 0
    for task in run.snapshot.tasks:
        if task.parent_id is None:
            continue
        parent = run.tasks.get(task.parent_id)
        if parent is None:
            continue
        checked += 1
        _check_chain_link(run, parent, task, found)
    for workflow in run.snapshot.workflows:
        checked += 1
        _check_workflow(run, workflow, found)
    return found.result("workflows_consistent", checked)


def _check_chain_link(run: _Run, parent: TaskRecord, child: TaskRecord, found: _Findings) -> None:
    first = _first_start(run, child)
    if first is not None:
        if parent.status != "SUCCESSFUL":
            found.add(
                f"chain: {_label(child)} ran although its parent {parent.result_id} is "
                f"{parent.status}"
            )
        elif parent.finished_at is not None and first.started_at < parent.finished_at:
            found.add(
                f"chain: {_label(child)} started at {_ts(first.started_at)}, before its "
                f"parent {parent.result_id} finished at {_ts(parent.finished_at)}"
            )
    if parent.status == "FAILED":
        if child.status not in {"FAILED", "CANCELLED"}:
            found.add(
                f"chain: parent {parent.result_id} FAILED but {_label(child)} is {child.status}"
            )
        elif child.status == "FAILED" and not _has_error(child, "workflow_failed"):
            found.add(f"chain: {_label(child)} FAILED without kind workflow_failed")
    if parent.status == "CANCELLED" and child.status not in ("CANCELLED", "FAILED"):
        found.add(
            f"chain: parent {parent.result_id} CANCELLED but {_label(child)} is {child.status}"
        )


def _check_workflow(run: _Run, workflow: WorkflowRecord, found: _Findings) -> None:
    members = _members(run, workflow)
    succeeded = [m for m in members if m.status == "SUCCESSFUL"]
    failed = [m for m in members if m.status == "FAILED"]
    wid = workflow.workflow_id[:8]
    if workflow.success_count > workflow.expected_count:
        found.add(
            f"workflow {wid}: success_count {workflow.success_count} > expected "
            f"{workflow.expected_count} (a member was counted twice)"
        )
    if workflow.success_count != len(succeeded) and len(members) == workflow.expected_count:
        found.add(
            f"workflow {wid}: success_count {workflow.success_count} but "
            f"{len(succeeded)} members are SUCCESSFUL"
        )
    if workflow.callback_result_id is None:
        return
    callback = run.tasks.get(workflow.callback_result_id)
    if callback is None:
        return
    first = _first_start(run, callback)
    if first is not None:
        if len(succeeded) != workflow.expected_count:
            found.add(
                f"chord {wid}: callback {callback.result_id} ran with only "
                f"{len(succeeded)}/{workflow.expected_count} members SUCCESSFUL"
            )
        last_member = max((m.finished_at for m in succeeded if m.finished_at), default=None)
        if last_member is not None and first.started_at < last_member:
            found.add(
                f"chord {wid}: callback {callback.result_id} started at "
                f"{_ts(first.started_at)}, before the last member finished at {_ts(last_member)}"
            )
    if failed:
        if callback.status != "FAILED" or not _has_error(callback, "workflow_failed"):
            found.add(
                f"chord {wid}: member {failed[0].result_id} FAILED but callback "
                f"{callback.result_id} is {callback.status} "
                f"({', '.join(e.kind for e in callback.errors) or 'no errors'})"
            )
        if workflow.status != "FAILED":
            found.add(f"chord {wid}: a member FAILED but the workflow is {workflow.status}")
    elif len(succeeded) == workflow.expected_count and callback.status == "WAITING":
        found.add(f"chord {wid}: every member succeeded but callback {callback.result_id} waits")


# ---------------------------------------------------------------- schedules


def _schedule_fires_once(run: _Run) -> InvariantResult:
    found = _Findings()
    fires: dict[tuple[str, str], list[int]] = defaultdict(list)
    for task in run.snapshot.tasks:
        if task.periodic_name is None or task.scheduled_at is None:
            continue
        if run.facts.schedule_names and task.periodic_name not in run.facts.schedule_names:
            continue
        fires[(task.periodic_name, task.scheduled_at)].append(task.result_id)
    for (name, at), ids in sorted(fires.items()):
        if len(ids) > 1:
            found.add(f"schedule {name!r} fire time {at} enqueued {len(ids)} times: {sorted(ids)}")
    return found.result("schedule_fires_once", len(fires))


# ---------------------------------------------------------------- cancel


def _cancel_final(run: _Run) -> InvariantResult:
    found = _Findings()
    for result_id, requested_at in sorted(run.facts.cancel_requests.items()):
        task = run.tasks.get(result_id)
        if task is None:
            continue
        known = run.facts.cancel_attempts.get(result_id)
        if known is not None:
            # The attempt claimed before a cancel of a RUNNING row may still start; it is
            # stopped within a heartbeat. Only a later attempt breaks the promise.
            late = [e for e in run.executions.get(result_id, []) if e.attempt > known]
        else:
            late = [e for e in run.executions.get(result_id, []) if e.started_at > requested_at]
        if late:
            found.add(
                f"{_label(task)}: attempt {late[0].attempt} started at "
                f"{_ts(late[0].started_at)}, after the cancel at {_ts(requested_at)}"
            )
        if task.status not in TERMINAL and task.status != "RUNNING":
            found.add(f"{_label(task)}: cancelled at {_ts(requested_at)} but still {task.status}")
    return found.result("cancel_final", len(run.facts.cancel_requests))


# ---------------------------------------------------------------- running


def _nothing_left_running(run: _Run) -> InvariantResult:
    found = _Findings()
    for task in run.snapshot.tasks:
        if task.status == "RUNNING":
            found.add(f"{_label(task)}: RUNNING after shutdown (leased by {task.leased_by})")
    return found.result("nothing_left_running", len(run.snapshot.tasks))


def _workload_executed(run: _Run) -> InvariantResult:
    found = _Findings()
    workload = [t for t in run.snapshot.tasks if t.kind]
    if workload and not run.snapshot.executions:
        found.add(f"{len(workload)} workload tasks, but not one execution in the ledger")
    return found.result("workload_executed", len(run.snapshot.executions))


def _processes_survive(run: _Run) -> InvariantResult:
    found = _Findings()
    for line in run.facts.unexpected_exits:
        found.add(line)
    return found.result("processes_survive", run.facts.processes)


def summary(results: Iterable[InvariantResult]) -> tuple[int, int]:
    """(passed, failed) counts."""
    items = list(results)
    passed = sum(1 for r in items if r.ok)
    return passed, len(items) - passed


def evidence(snapshot: Snapshot) -> dict[str, int]:
    """How hard the run pushed: counts of the situations the invariants are about.

    A run that passes without lease expiries, fenced-out executions or retries proves
    little; these numbers say what was actually exercised.
    """
    run = _Run(snapshot)
    counts: dict[str, int] = defaultdict(int)
    for task in snapshot.tasks:
        for error in task.errors:
            counts[f"errors.{error.kind}"] += 1
        if task.attempts > 1:
            counts["tasks_retried"] += 1
        if task.periodic_name is not None:
            counts["schedule_fires"] += 1
        if task.lock_key is not None:
            counts["lock_key_tasks"] += 1
    for execution in snapshot.executions:
        owner = run.tasks.get(execution.result_id)
        if owner is None:
            continue
        counts["executions"] += 1
        verdict = run.verdict(owner, execution.attempt)
        if verdict in FENCED_KINDS:
            counts["executions_fenced_out"] += 1
            if execution.outcome == "ok":
                counts["fenced_out_results_discarded"] += 1
        if execution.finished_at is None:
            counts["executions_unfinished"] += 1
    return dict(sorted(counts.items()))
