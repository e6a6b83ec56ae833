"""The torture checker catches each kind of violation, and accepts what fencing allows."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from reproq.stress.checker import INVARIANTS, InvariantResult, check, evidence
from reproq.stress.snapshot import (
    AttemptError,
    Execution,
    RunFacts,
    Snapshot,
    TaskRecord,
    WorkflowRecord,
)

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def task(result_id: int, **fields: object) -> TaskRecord:
    values: dict[str, object] = {
        "result_id": result_id,
        "status": "SUCCESSFUL",
        "kind": "fast",
        "attempts": 1,
        "max_attempts": 3,
        "enqueued_at": at(0),
        "updated_at": at(2),
        "finished_at": at(2),
        "worker_ids": ("w1",),
        "return_token": f"t{result_id}-1",
    }
    values.update(fields)
    return TaskRecord(**values)  # type: ignore[arg-type]


def run(
    result_id: int,
    attempt: int = 1,
    *,
    start: float = 1.0,
    end: float | None = -1.0,
    worker: str = "w1",
    pid: int = 100,
    outcome: str | None = "ok",
    token: str | None = None,
    ancestors: tuple[int, ...] = (),
) -> Execution:
    if end == -1.0:
        end = start + 0.5  # the default: half a second of work
    return Execution(
        token=token or f"t{result_id}-{attempt}",
        result_id=result_id,
        attempt=attempt,
        worker_id=worker,
        pid=pid,
        ancestors=ancestors,
        started_at=at(start),
        finished_at=at(end) if end is not None else None,
        outcome=outcome if end is not None else None,
    )


def snapshot(
    tasks: Sequence[TaskRecord],
    executions: Sequence[Execution],
    workflows: Sequence[WorkflowRecord] = (),
    **facts: object,
) -> Snapshot:
    values: dict[str, object] = {
        "enqueued_ids": frozenset(t.result_id for t in tasks),
        "quiesced_at": at(50),
        "checked_at": at(60),
    }
    values.update(facts)
    return Snapshot(
        tasks=tuple(tasks),
        executions=tuple(executions),
        workflows=tuple(workflows),
        facts=RunFacts(**values),  # type: ignore[arg-type]
    )


def results(snap: Snapshot) -> dict[str, InvariantResult]:
    out = {r.name: r for r in check(snap)}
    assert list(out) == list(INVARIANTS)
    return out


def failing(snap: Snapshot) -> set[str]:
    """Failed invariants; hand-made snapshots without executions are not run-validity tests."""
    return {
        name
        for name, r in results(snap).items()
        if not r.ok and (name != "workload_executed" or snap.executions)
    }


def clean_run() -> Snapshot:
    """Two plain tasks, one retried after a lease expiry, one lock_key pair in sequence."""
    return snapshot(
        [
            task(1),
            task(
                2,
                attempts=2,
                worker_ids=("w1", "w2"),
                errors=(AttemptError(kind="lease_expiry", attempt=1, at=at(5)),),
                finished_at=at(7),
                return_token="t2-2",
            ),
            task(3, lock_key="k", finished_at=at(2)),
            task(4, lock_key="k", finished_at=at(4), worker_ids=("w2",), return_token="t4-1"),
        ],
        [
            run(1),
            # attempt 1 of task 2: its worker was SIGSTOPped; the body finished late
            run(2, 1, start=1, end=8, worker="w1"),
            run(2, 2, start=6, end=6.5, worker="w2"),
            run(3, start=1, end=1.9),
            run(4, start=2.5, end=3.5, worker="w2"),
        ],
    )


def test_a_clean_run_passes_every_invariant() -> None:
    out = results(clean_run())
    assert all(r.ok for r in out.values()), {n: r.details for n, r in out.items() if not r.ok}
    assert out["lock_key_exclusive"].checked == 2


def test_double_completion_is_caught() -> None:
    # Attempt 1 succeeded and nothing says it was fenced out, yet attempt 2 ran and
    # succeeded too: the task completed twice.
    snap = snapshot(
        [task(1, attempts=2, worker_ids=("w1", "w2"), return_token="t1-2")],
        [run(1, 1, start=1, end=2, worker="w1"), run(1, 2, start=3, end=4, worker="w2")],
    )
    out = results(snap)
    assert not out["single_success"].ok
    assert "left no trace" in out["single_success"].details[0]


def test_result_stored_from_a_fenced_out_attempt_is_caught() -> None:
    snap = snapshot(
        [
            task(
                1,
                attempts=2,
                worker_ids=("w1", "w1"),
                errors=(AttemptError(kind="lease_expiry", attempt=1, at=at(5)),),
                return_token="t1-1",
            )
        ],
        [run(1, 1, start=1, end=9), run(1, 2, start=6, end=7)],
    )
    out = results(snap)
    assert not out["single_success"].ok
    assert "fenced-out attempt" in out["single_success"].details[0]


def test_result_from_a_worker_that_did_not_hold_the_lease_is_caught() -> None:
    snap = snapshot([task(1, worker_ids=("w2",))], [run(1, worker="w1")])
    assert failing(snap) == {"single_success"}


def test_success_of_an_always_failing_task_is_caught() -> None:
    snap = snapshot([task(1, kind="always_fail")], [run(1)])
    assert failing(snap) == {"single_success"}


def test_one_attempt_running_twice_at_once_is_caught() -> None:
    snap = snapshot(
        [task(1, return_token="a", finished_at=at(5))],
        [
            run(1, 1, start=1, end=3, worker="w1", token="a"),
            run(1, 1, start=2, end=4, worker="w2", pid=200, token="b"),
        ],
    )
    out = results(snap)
    assert not out["single_success"].ok
    assert "ran twice at once" in out["single_success"].details[0]


def test_lock_key_overlap_is_caught() -> None:
    snap = snapshot(
        [task(1, lock_key="k"), task(2, lock_key="k", worker_ids=("w2",), return_token="t2-1")],
        [run(1, start=1, end=1.8), run(2, start=1.5, end=1.9, worker="w2", pid=200)],
    )
    out = results(snap)
    assert failing(snap) == {"lock_key_exclusive"}
    assert "'k'" in out["lock_key_exclusive"].details[0]


def test_lock_key_overlap_of_a_fenced_out_execution_is_allowed() -> None:
    # Task 1's worker stopped past its lease while running; task 2 took the key after
    # the reclaim. The zombie body overlaps task 2 but its result was discarded.
    snap = snapshot(
        [
            task(
                1,
                lock_key="k",
                attempts=2,
                worker_ids=("w1", "w3"),
                errors=(AttemptError(kind="lease_expiry", attempt=1, at=at(5)),),
                finished_at=at(12),
                return_token="t1-2",
            ),
            task(2, lock_key="k", worker_ids=("w2",), return_token="t2-1", finished_at=at(7)),
        ],
        [
            run(1, 1, start=1, end=9, worker="w1"),
            run(2, 1, start=6, end=6.9, worker="w2", pid=200),
            run(1, 2, start=10, end=11, worker="w3", pid=300),
        ],
    )
    assert failing(snap) == set()


def test_thread_timeout_ends_the_counted_interval_at_the_recorded_failure() -> None:
    # A thread-executor timeout fails the attempt at its deadline while the body runs on;
    # the key is free from the recorded failure onwards.
    snap = snapshot(
        [
            task(
                1,
                status="FAILED",
                kind="timeout",
                lock_key="k",
                max_attempts=1,
                errors=(AttemptError(kind="infra_error", attempt=1, at=at(2)),),
                return_token=None,
            ),
            task(2, lock_key="k", finished_at=at(3), return_token="t2-1"),
        ],
        [run(1, start=1, end=4), run(2, start=2.5, end=2.9, pid=200)],
    )
    assert failing(snap) == set()


def test_unfinished_execution_ends_when_its_process_died() -> None:
    base = [
        task(
            1,
            lock_key="k",
            attempts=2,
            worker_ids=("w1", "w2"),
            errors=(AttemptError(kind="app_error", attempt=1, at=None),),
            return_token="t1-2",
            finished_at=at(9),
        ),
        task(2, lock_key="k", worker_ids=("w2",), return_token="t2-1", finished_at=at(5)),
    ]
    executions = [
        run(1, 1, start=1, end=None, pid=100),
        run(2, start=4, end=4.5, worker="w2", pid=200),
        run(1, 2, start=8, end=8.5, worker="w2", pid=200),
    ]
    died_early = snapshot(base, executions, process_exits={100: at(3)})
    assert failing(died_early) == set()
    never_died = snapshot(base, executions)
    assert failing(never_died) == {"lock_key_exclusive"}


def _killed_subprocess_worker(child_end: float) -> Snapshot:
    """Worker pid 100 is killed at 3 s while its task process (pid 150) runs task 1 until
    ``child_end``; task 1's lease expires and task 2, same lock_key, runs at 6-7 s."""
    return snapshot(
        [
            task(
                1,
                lock_key="k",
                attempts=2,
                worker_ids=("w1", "w2"),
                errors=(AttemptError(kind="lease_expiry", attempt=1, at=at(5)),),
                finished_at=at(9),
                return_token="t1-2",
            ),
            task(2, lock_key="k", worker_ids=("w2",), return_token="t2-1", finished_at=at(7)),
        ],
        [
            run(1, 1, start=1, end=child_end, pid=150, ancestors=(100, 1)),
            run(2, start=6, end=7, worker="w2", pid=200),
            run(1, 2, start=8, end=8.5, worker="w2", pid=200),
        ],
        process_exits={100: at(3)},
    )


def test_a_task_process_that_outlives_its_killed_worker_breaks_its_lock_key() -> None:
    snap = _killed_subprocess_worker(child_end=7.5)
    out = results(snap)
    assert failing(snap) == {"lock_key_exclusive", "no_orphaned_execution"}
    assert "task 1 attempt 1 on w1" in out["lock_key_exclusive"].details[0]
    assert "after its worker w1 died" in out["no_orphaned_execution"].details[0]


def test_a_task_process_that_dies_with_its_worker_is_fenced_out_as_usual() -> None:
    assert failing(_killed_subprocess_worker(child_end=3.3)) == set()
    unfinished = _killed_subprocess_worker(child_end=3.3)
    gone = dataclasses.replace(unfinished.executions[0], finished_at=None, outcome=None)
    snap = dataclasses.replace(unfinished, executions=(gone, *unfinished.executions[1:]))
    assert failing(snap) == set()


def test_a_worker_pid_that_ended_before_the_body_began_is_another_process() -> None:
    snap = _killed_subprocess_worker(child_end=7.5)
    earlier = dataclasses.replace(snap.facts, process_exits={100: at(0.5)})
    assert failing(dataclasses.replace(snap, facts=earlier)) == set()


def test_concurrency_over_the_limit_is_caught() -> None:
    tasks = [
        task(i, concurrency_key="c", concurrency_limit=2, return_token=f"t{i}-1", finished_at=at(4))
        for i in (1, 2, 3)
    ]
    within = snapshot(tasks, [run(1, start=1, end=3), run(2, start=1, end=3), run(3, start=3.5)])
    assert failing(within) == set()
    over = snapshot(tasks, [run(1, start=1, end=3), run(2, start=1, end=3), run(3, start=2)])
    out = results(over)
    assert failing(over) == {"concurrency_limit"}
    assert "3 at once" in out["concurrency_limit"].details[0]


def test_attempts_over_max_attempts_are_caught() -> None:
    in_row = snapshot([task(1, attempts=4, max_attempts=3, return_token="t1-4")], [run(1, 4)])
    assert "attempts_bounded" in failing(in_row)
    in_ledger = snapshot(
        [
            task(
                1,
                status="FAILED",
                kind="always_fail",
                attempts=1,
                max_attempts=1,
                return_token=None,
                errors=(AttemptError(kind="app_error", attempt=1),),
            )
        ],
        [run(1, 1, outcome="error"), run(1, 2, start=3, end=4, outcome="error")],
    )
    assert failing(in_ledger) == {"attempts_bounded"}


def test_a_lost_task_is_caught() -> None:
    gone = snapshot([task(1)], [run(1)], enqueued_ids=frozenset({1, 2}))
    out = results(gone)
    assert failing(gone) == {"no_task_lost"}
    assert "task 2 was enqueued but its row is gone" in out["no_task_lost"].details


def test_ready_and_due_after_the_drain_is_lost_but_a_pending_retry_is_not() -> None:
    stuck = task(1, status="READY", run_after=None, updated_at=at(1), return_token=None)
    assert failing(snapshot([stuck], [])) == {"no_task_lost"}
    retry = task(
        2,
        status="READY",
        kind="flaky",
        run_after=at(80),
        updated_at=at(10),
        return_token=None,
        errors=(AttemptError(kind="app_error", attempt=1),),
    )
    assert failing(snapshot([retry], [run(2, outcome="error")])) == set()
    drain_gave_up = snapshot([retry], [run(2, outcome="error")], quiesced_at=None)
    assert failing(drain_gave_up) == {"no_task_lost"}


def test_waiting_forever_behind_a_finished_parent_is_caught() -> None:
    parent = task(1, workflow_id="wf")
    child = task(
        2, status="WAITING", parent_id=1, workflow_id="wf", wait_count=1, return_token=None
    )
    assert failing(snapshot([parent, child], [run(1)])) == {"no_task_lost"}
    running_parent = dataclasses.replace(parent, status="READY", run_after=at(90))
    assert failing(snapshot([running_parent, child], [])) == set()


def test_running_after_shutdown_is_caught() -> None:
    snap = snapshot([task(1, status="RUNNING", leased_by="w1", return_token=None)], [])
    out = results(snap)
    assert failing(snap) == {"nothing_left_running"}
    assert "leased by w1" in out["nothing_left_running"].details[0]


def test_chain_child_running_before_its_parent_finished_is_caught() -> None:
    parent = task(1, workflow_id="wf", finished_at=at(3))
    child = task(2, parent_id=1, workflow_id="wf", finished_at=at(4), return_token="t2-1")
    ok = snapshot([parent, child], [run(1, start=1, end=2.9), run(2, start=3.1, end=3.5)])
    assert failing(ok) == set()
    early = snapshot([parent, child], [run(1, start=1, end=2.9), run(2, start=2, end=2.5)])
    assert failing(early) == {"workflows_consistent"}


def test_failed_chain_parent_must_fail_its_children() -> None:
    parent = task(
        1,
        status="FAILED",
        kind="chain_step_fail",
        max_attempts=1,
        return_token=None,
        errors=(AttemptError(kind="app_error", attempt=1),),
    )
    failed_child = task(
        2,
        status="FAILED",
        kind="chain_step",
        parent_id=1,
        attempts=0,
        return_token=None,
        errors=(AttemptError(kind="workflow_failed", attempt=0),),
    )
    assert failing(snapshot([parent, failed_child], [run(1, outcome="error")])) == set()
    ran_anyway = dataclasses.replace(failed_child, status="SUCCESSFUL", attempts=1, errors=())
    snap = snapshot([parent, ran_anyway], [run(1, outcome="error"), run(2, start=3, end=4)])
    assert "workflows_consistent" in failing(snap)


def _chord(callback_status: str, member_status: str = "SUCCESSFUL") -> list[TaskRecord]:
    return [
        task(1, workflow_id="wf", finished_at=at(2)),
        task(
            2,
            workflow_id="wf",
            finished_at=at(3),
            status=member_status,
            return_token="t2-1" if member_status == "SUCCESSFUL" else None,
            errors=()
            if member_status == "SUCCESSFUL"
            else (AttemptError(kind="app_error", attempt=1),),
        ),
        task(
            3,
            workflow_id="wf",
            kind="chord_callback",
            status=callback_status,
            finished_at=at(5),
            return_token="t3-1" if callback_status == "SUCCESSFUL" else None,
            errors=()
            if callback_status != "FAILED"
            else (AttemptError(kind="workflow_failed", attempt=0),),
        ),
    ]


def test_chord_callback_runs_only_after_every_member_succeeded() -> None:
    workflow = WorkflowRecord(
        workflow_id="wf",
        expected_count=2,
        success_count=2,
        failure_count=0,
        callback_result_id=3,
        status="SUCCESSFUL",
    )
    after = [run(1, end=1.9), run(2, start=2, end=2.9), run(3, start=3.5, end=4)]
    assert failing(snapshot(_chord("SUCCESSFUL"), after, [workflow])) == set()
    before = [run(1, end=1.9), run(2, start=2, end=2.9), run(3, start=2.5, end=4)]
    assert failing(snapshot(_chord("SUCCESSFUL"), before, [workflow])) == {"workflows_consistent"}


def test_chord_with_a_failed_member_must_fail_its_callback() -> None:
    workflow = WorkflowRecord(
        workflow_id="wf",
        expected_count=2,
        success_count=1,
        failure_count=1,
        callback_result_id=3,
        status="FAILED",
    )
    execs = [run(1, end=1.9), run(2, start=2, end=2.9, outcome="error")]
    good = [*_chord("FAILED", "FAILED")]
    good[1] = dataclasses.replace(good[1], max_attempts=1, kind="chord_member_fail")
    assert failing(snapshot(good, execs, [workflow])) == set()
    stuck = [*good]
    stuck[2] = dataclasses.replace(stuck[2], status="WAITING", errors=())
    assert "workflows_consistent" in failing(snapshot(stuck, execs, [workflow]))


def test_counting_a_chord_member_twice_is_caught() -> None:
    workflow = WorkflowRecord(
        workflow_id="wf",
        expected_count=2,
        success_count=3,
        failure_count=0,
        callback_result_id=3,
        status="SUCCESSFUL",
    )
    execs = [run(1, end=1.9), run(2, start=2, end=2.9), run(3, start=3.5, end=4)]
    assert failing(snapshot(_chord("SUCCESSFUL"), execs, [workflow])) == {"workflows_consistent"}


def test_a_schedule_fire_time_enqueued_twice_is_caught() -> None:
    fire = {"periodic_name": "tick", "scheduled_at": "2026-01-01T12:00:00+00:00", "kind": "tick"}
    once = snapshot([task(1, **fire)], [run(1)], schedule_names=frozenset({"tick"}))
    assert failing(once) == set()
    twice = snapshot(
        [task(1, **fire), task(2, **fire, return_token="t2-1")],
        [run(1), run(2)],
        schedule_names=frozenset({"tick"}),
    )
    out = results(twice)
    assert failing(twice) == {"schedule_fires_once"}
    assert "enqueued 2 times" in out["schedule_fires_once"].details[0]


def test_a_task_started_after_its_cancel_is_caught() -> None:
    cancelled = task(
        1,
        status="FAILED",
        kind="cancellable",
        attempts=2,
        worker_ids=("w1", "w2"),
        return_token=None,
        errors=(
            AttemptError(kind="lease_expiry", attempt=1),
            AttemptError(kind="cancelled", attempt=2),
        ),
    )
    execs = [run(1, 1, start=1, end=None), run(1, 2, start=8, end=9, outcome="cancelled")]
    assert failing(snapshot([cancelled], execs, cancel_requests={1: at(10)})) == set()
    assert failing(snapshot([cancelled], execs, cancel_requests={1: at(5)})) == {"cancel_final"}


def test_the_running_attempt_may_start_after_a_cancel_but_no_later_one() -> None:
    cancelled = task(
        1,
        status="FAILED",
        kind="cancellable",
        attempts=2,
        worker_ids=("w1", "w2"),
        return_token=None,
        errors=(
            AttemptError(kind="lease_expiry", attempt=1),
            AttemptError(kind="cancelled", attempt=2),
        ),
    )
    # Cancelled while attempt 2 was claimed (RUNNING); it began executing just after.
    claimed_then_cancelled = [run(1, 2, start=6, end=7, outcome="cancelled")]
    facts = {"cancel_requests": {1: at(5)}, "cancel_attempts": {1: 2}}
    assert failing(snapshot([cancelled], claimed_then_cancelled, **facts)) == set()
    # A third attempt after the cancel is a violation, whatever the clocks say.
    relaunched = [*claimed_then_cancelled, run(1, 3, start=8, end=9, outcome="cancelled")]
    assert "cancel_final" in failing(snapshot([cancelled], relaunched, **facts))


def test_violations_beyond_the_limit_are_counted_not_listed() -> None:
    tasks = [task(i, status="RUNNING", return_token=None) for i in range(1, 31)]
    out = results(snapshot(tasks, []))["nothing_left_running"]
    assert len(out.details) == 21
    assert out.details[-1] == "... and 10 more"


def test_evidence_counts_what_the_run_exercised() -> None:
    counts = evidence(clean_run())
    assert counts["executions"] == 5
    assert counts["executions_fenced_out"] == 1
    assert counts["fenced_out_results_discarded"] == 1
    assert counts["errors.lease_expiry"] == 1
    assert counts["tasks_retried"] == 1
    assert counts["lock_key_tasks"] == 2


def test_a_process_that_died_on_its_own_is_caught() -> None:
    snap = snapshot([task(1)], [run(1)], unexpected_exits=("worker w1 (pid 7) exited with code 1",))
    out = results(snap)
    assert failing(snap) == {"processes_survive"}
    assert "exited with code 1" in out["processes_survive"].details[0]


def test_a_run_that_executed_nothing_does_not_pass() -> None:
    never_ran = task(1, status="FAILED", attempts=3, return_token=None)
    assert not results(snapshot([never_ran], []))["workload_executed"].ok
    assert results(snapshot([never_ran], [run(1, outcome="error")]))["workload_executed"].ok
