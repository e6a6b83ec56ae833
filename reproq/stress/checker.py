"""The invariants a torture run must keep, checked from a :class:`Snapshot` alone.

:func:`check` is a pure function: task rows, ledger executions, workflow rows and the
harness's facts in, one :class:`InvariantResult` per invariant out. No database, no
clock, so the unit tests feed it hand-made violations. The words the invariants use
(execution, verdict, fenced out, counted, outlived its worker) are defined in
:mod:`reproq.stress.verdicts`; the checks over time intervals live in
:mod:`reproq.stress.overlaps`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from reproq.stress.overlaps import (
    concurrency_overflows,
    lock_key_overlaps,
    orphaned_executions,
    twin_attempt_overlaps,
)
from reproq.stress.snapshot import Execution, Snapshot, TaskRecord, WorkflowRecord
from reproq.stress.verdicts import FENCED_KINDS, TERMINAL, RunIndex, label, ts

__all__ = ["INVARIANTS", "InvariantResult", "check", "evidence", "summary"]

MAX_DETAILS = 20
"""Violations listed per invariant; the rest are counted."""

INVARIANTS: Mapping[str, str] = {
    "no_task_lost": (
        "every enqueued task exists and is terminal or legitimately pending "
        "(retry not yet due, WAITING on an unfinished parent)"
    ),
    "single_success": (
        "at most one successful completion per task: the stored result comes from the "
        "final attempt of the worker that held it, never from a fenced-out attempt"
    ),
    "lock_key_exclusive": (
        "no two executions of one lock_key overlap in time (counted ones, and any that "
        "outlived its worker)"
    ),
    "concurrency_limit": (
        "never more executions of a concurrency_key than its limit (counted ones, and any "
        "that outlived its worker)"
    ),
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
    "no_orphaned_execution": (
        "no task body ran on after its worker process died: a killed worker's task "
        "processes die with it"
    ),
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


class _Findings:
    """Collects violation lines for one invariant."""

    def __init__(self, lines: Iterable[str] = ()) -> None:
        self.lines: list[str] = list(lines)

    def add(self, line: str) -> None:
        self.lines.append(line)

    def result(self, name: str, checked: int) -> InvariantResult:
        shown = self.lines[:MAX_DETAILS]
        if len(self.lines) > MAX_DETAILS:
            shown.append(f"... and {len(self.lines) - MAX_DETAILS} more")
        return InvariantResult(name=name, ok=not self.lines, checked=checked, details=tuple(shown))


def check(snapshot: Snapshot) -> list[InvariantResult]:
    """Check every invariant of :data:`INVARIANTS` against ``snapshot``, in that order."""
    run = RunIndex(snapshot)
    checks: dict[str, Callable[[RunIndex], InvariantResult]] = {
        "no_task_lost": _no_task_lost,
        "single_success": _single_success,
        "lock_key_exclusive": _lock_key_exclusive,
        "concurrency_limit": _concurrency_limit,
        "attempts_bounded": _attempts_bounded,
        "workflows_consistent": _workflows_consistent,
        "schedule_fires_once": _schedule_fires_once,
        "cancel_final": _cancel_final,
        "nothing_left_running": _nothing_left_running,
        "no_orphaned_execution": _no_orphaned_execution,
        "workload_executed": _workload_executed,
        "processes_survive": _processes_survive,
    }
    return [checks[name](run) for name in INVARIANTS]


# ---------------------------------------------------------------- no_task_lost


def _parents_done(run: RunIndex, task: TaskRecord) -> tuple[bool, str]:
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


def _chord_members_of_callback(run: RunIndex, task: TaskRecord) -> list[TaskRecord] | None:
    workflow = run.workflow_of_callback.get(task.result_id)
    return _members(run, workflow) if workflow is not None else None


def _members(run: RunIndex, workflow: WorkflowRecord) -> list[TaskRecord]:
    return [
        t
        for t in run.by_workflow.get(workflow.workflow_id, ())
        if t.result_id != workflow.callback_result_id
    ]


def _no_task_lost(run: RunIndex) -> InvariantResult:
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
                    f"{label(task)}: still READY (due {ts(task.run_after or task.enqueued_at)})"
                    " when the drain gave up"
                )
                continue
            due = task.run_after or task.enqueued_at
            became_ready_later = task.updated_at is not None and task.updated_at > quiesced
            if (due is not None and due > quiesced) or became_ready_later:
                continue  # a retry in backoff, or made READY after the queue drained
            found.add(
                f"{label(task)}: READY and due since {ts(due)}, yet not picked up "
                f"while the queue drained (quiesced at {ts(quiesced)})"
            )
        elif task.status == "WAITING":
            done, why = _parents_done(run, task)
            if done:
                found.add(f"{label(task)}: WAITING forever: {why}")
        else:
            found.add(f"{label(task)}: unknown status {task.status!r}")
    return found.result("no_task_lost", len(run.snapshot.tasks))


# ---------------------------------------------------------------- single_success


def _single_success(run: RunIndex) -> InvariantResult:
    found = _Findings()
    for task in run.snapshot.tasks:
        executions = run.executions.get(task.result_id, [])
        if task.status == "SUCCESSFUL":
            _check_stored_result(run, task, found)
            if task.kind == "always_fail" or task.kind.endswith("_fail"):
                found.add(f"{label(task)}: SUCCESSFUL although its body always raises")
        for execution in executions:
            if execution.outcome != "ok" or execution.attempt >= task.attempts:
                continue
            if run.verdict(task, execution.attempt) is None:
                found.add(
                    f"{label(task)}: attempt {execution.attempt} on {execution.worker_id} "
                    f"succeeded and left no trace, yet the task ran again as attempt "
                    f"{task.attempts} (a completion was lost or counted twice)"
                )
        for line in twin_attempt_overlaps(run, task, executions):
            found.add(line)
    return found.result("single_success", len(run.snapshot.tasks))


def _check_stored_result(run: RunIndex, task: TaskRecord, found: _Findings) -> None:
    if task.return_token is None:
        if task.kind:  # workload tasks always return a token
            found.add(f"{label(task)}: SUCCESSFUL without the token its body returns")
        return
    source = run.by_token.get(task.return_token)
    if source is None or source.result_id != task.result_id:
        found.add(f"{label(task)}: stored result matches no execution of this task")
        return
    if source.attempt != task.attempts:
        verdict = run.verdict(task, source.attempt)
        found.add(
            f"{label(task)}: stored result comes from attempt {source.attempt} on "
            f"{source.worker_id} (verdict {verdict or 'none'}), not the final attempt "
            f"{task.attempts}: a fenced-out attempt finished the task"
        )
    elif task.worker_ids and source.worker_id != task.worker_ids[-1]:
        found.add(
            f"{label(task)}: stored result comes from {source.worker_id}, but attempt "
            f"{task.attempts} was claimed by {task.worker_ids[-1]}"
        )
    if source.outcome not in (None, "ok"):
        found.add(
            f"{label(task)}: stored result comes from an execution that ended {source.outcome}"
        )


# ---------------------------------------------------------------- keys


def _lock_key_exclusive(run: RunIndex) -> InvariantResult:
    lines, checked = lock_key_overlaps(run)
    return _Findings(lines).result("lock_key_exclusive", checked)


def _concurrency_limit(run: RunIndex) -> InvariantResult:
    lines, checked = concurrency_overflows(run)
    return _Findings(lines).result("concurrency_limit", checked)


def _no_orphaned_execution(run: RunIndex) -> InvariantResult:
    lines, checked = orphaned_executions(run)
    return _Findings(lines).result("no_orphaned_execution", checked)


# ---------------------------------------------------------------- attempts


def _attempts_bounded(run: RunIndex) -> InvariantResult:
    found = _Findings()
    for task in run.snapshot.tasks:
        if task.attempts > task.max_attempts:
            found.add(f"{label(task)}: attempts {task.attempts} > max_attempts {task.max_attempts}")
        executions = run.executions.get(task.result_id, [])
        attempts = {e.attempt for e in executions}
        over = sorted(a for a in attempts if a > task.max_attempts or a < 1)
        if over:
            found.add(
                f"{label(task)}: executed as attempt {over} with max_attempts {task.max_attempts}"
            )
        if len(attempts) > task.max_attempts:
            found.add(
                f"{label(task)}: {len(attempts)} distinct attempts executed, "
                f"max_attempts {task.max_attempts}"
            )
    return found.result("attempts_bounded", len(run.snapshot.tasks))


# ---------------------------------------------------------------- workflows


def _first_start(run: RunIndex, task: TaskRecord) -> Execution | None:
    executions = run.executions.get(task.result_id)
    return executions[0] if executions else None


def _has_error(task: TaskRecord, kind: str) -> bool:
    return any(e.kind == kind for e in task.errors)


def _workflows_consistent(run: RunIndex) -> InvariantResult:
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


def _check_chain_link(
    run: RunIndex, parent: TaskRecord, child: TaskRecord, found: _Findings
) -> None:
    first = _first_start(run, child)
    if first is not None:
        if parent.status != "SUCCESSFUL":
            found.add(
                f"chain: {label(child)} ran although its parent {parent.result_id} is "
                f"{parent.status}"
            )
        elif parent.finished_at is not None and first.started_at < parent.finished_at:
            found.add(
                f"chain: {label(child)} started at {ts(first.started_at)}, before its "
                f"parent {parent.result_id} finished at {ts(parent.finished_at)}"
            )
    if parent.status == "FAILED":
        if child.status not in {"FAILED", "CANCELLED"}:
            found.add(
                f"chain: parent {parent.result_id} FAILED but {label(child)} is {child.status}"
            )
        elif child.status == "FAILED" and not _has_error(child, "workflow_failed"):
            found.add(f"chain: {label(child)} FAILED without kind workflow_failed")
    if parent.status == "CANCELLED" and child.status not in ("CANCELLED", "FAILED"):
        found.add(
            f"chain: parent {parent.result_id} CANCELLED but {label(child)} is {child.status}"
        )


def _check_workflow(run: RunIndex, workflow: WorkflowRecord, found: _Findings) -> None:
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
                f"{ts(first.started_at)}, before the last member finished at {ts(last_member)}"
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


def _schedule_fires_once(run: RunIndex) -> InvariantResult:
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


def _cancel_final(run: RunIndex) -> InvariantResult:
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
                f"{label(task)}: attempt {late[0].attempt} started at "
                f"{ts(late[0].started_at)}, after the cancel at {ts(requested_at)}"
            )
        if task.status not in TERMINAL and task.status != "RUNNING":
            found.add(f"{label(task)}: cancelled at {ts(requested_at)} but still {task.status}")
    return found.result("cancel_final", len(run.facts.cancel_requests))


# ---------------------------------------------------------------- running


def _nothing_left_running(run: RunIndex) -> InvariantResult:
    found = _Findings()
    for task in run.snapshot.tasks:
        if task.status == "RUNNING":
            found.add(f"{label(task)}: RUNNING after shutdown (leased by {task.leased_by})")
    return found.result("nothing_left_running", len(run.snapshot.tasks))


def _workload_executed(run: RunIndex) -> InvariantResult:
    found = _Findings()
    workload = [t for t in run.snapshot.tasks if t.kind]
    if workload and not run.snapshot.executions:
        found.add(f"{len(workload)} workload tasks, but not one execution in the ledger")
    return found.result("workload_executed", len(run.snapshot.executions))


def _processes_survive(run: RunIndex) -> InvariantResult:
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
    little; these numbers say what was actually exercised. ``executions_in_task_processes``
    counts bodies run in a process the worker started (the ``subprocess`` fleet).
    """
    run = RunIndex(snapshot)
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
        if execution.pid not in snapshot.facts.process_exits and any(
            pid in snapshot.facts.process_exits for pid in execution.ancestors
        ):
            counts["executions_in_task_processes"] += 1
    counts["executions_whose_worker_died"] = orphaned_executions(run)[1]
    return dict(sorted(counts.items()))
