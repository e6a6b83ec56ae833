"""Torture runs are reproducible: the fault plan and the workload follow the seed."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from reproq.db import STATEMENT_ANSWER_GRACE
from reproq.engine.worker import WorkerOptions
from reproq.errors import UsageError
from reproq.stress.faults import DEFAULT_FAULTS, FaultKind, parse_fault_kinds, plan_faults
from reproq.stress.fleet import Fleet, WorkerSettings
from reproq.stress.workload import KINDS, Workload


def _plan(seed: int, kinds: tuple[FaultKind, ...] = DEFAULT_FAULTS) -> list[object]:
    return list(
        plan_faults(
            seed=seed,
            duration=120,
            kinds=kinds,
            workers=4,
            beats=2,
            lease_seconds=4,
            mean_interval=3,
        )
    )


def test_the_same_seed_plans_the_same_faults() -> None:
    assert _plan(7) == _plan(7)
    assert _plan(7) != _plan(8)


def test_the_plan_uses_only_the_chosen_kinds_and_leaves_time_to_recover() -> None:
    events = plan_faults(
        seed=3,
        duration=60,
        kinds=(FaultKind.KILL, FaultKind.SLOW),
        workers=3,
        lease_seconds=4,
        mean_interval=2,
    )
    assert events
    assert {e.kind for e in events} <= {FaultKind.KILL, FaultKind.SLOW}
    assert all(3.0 <= e.at < 60 - (4 + 3) for e in events)
    assert all(0 <= e.target < 3 for e in events)


def test_a_stopped_worker_sleeps_past_its_lease() -> None:
    events = plan_faults(
        seed=11, duration=300, kinds=(FaultKind.STOP,), workers=2, lease_seconds=4, mean_interval=3
    )
    assert events
    assert all(e.seconds > 4 for e in events)
    assert {e.variant for e in events} == {"", "twin"}


def test_a_long_db_freeze_outlasts_the_workers_answer_timeout() -> None:
    events = plan_faults(
        seed=2,
        duration=300,
        kinds=(FaultKind.DB_FREEZE,),
        workers=3,
        lease_seconds=4,
        mean_interval=3,
    )
    answer_timeout = WorkerOptions().statement_timeout + STATEMENT_ANSWER_GRACE
    long = [e for e in events if e.variant == "long"]
    short = [e for e in events if e.variant == ""]
    assert long and short and len(long) + len(short) == len(events)
    assert all(e.seconds > answer_timeout + 2 for e in long)
    assert all(0 < e.seconds < answer_timeout for e in short)
    assert FaultKind.DB_FREEZE.needs_local_server and FaultKind.DB_FREEZE in DEFAULT_FAULTS


def test_a_mixed_fleet_runs_the_subprocess_executor_in_its_chosen_slots(tmp_path: Path) -> None:
    fleet = Fleet(
        dsn="dbname=x",
        workers=3,
        settings=WorkerSettings(concurrency=50, subprocess_slots=frozenset({0})),
        log_dir=tmp_path,
    )

    def flag(slot: int, name: str) -> str:
        command = fleet.worker_command(slot)
        return command[command.index(name) + 1]

    assert (flag(0, "--executor"), flag(0, "--concurrency")) == ("subprocess", "4")
    assert (flag(1, "--executor"), flag(1, "--concurrency")) == ("thread", "50")
    assert [fleet.executor_of(slot) for slot in range(3)] == ["subprocess", "thread", "thread"]


def test_database_restarts_are_spaced_out() -> None:
    events = plan_faults(
        seed=5,
        duration=300,
        kinds=(FaultKind.DB_RESTART,),
        workers=2,
        lease_seconds=4,
        mean_interval=2,
    )
    times = [e.at for e in events]
    assert len(times) >= 2
    assert all(b - a >= 20 for a, b in itertools.pairwise(times))


def test_no_faults_means_an_empty_plan() -> None:
    assert (
        plan_faults(seed=1, duration=60, kinds=(), workers=2, lease_seconds=4, mean_interval=2)
        == []
    )


def test_fault_names_parse_and_unknown_ones_are_a_usage_error() -> None:
    assert parse_fault_kinds("kill,stop,db-kill") == (
        FaultKind.KILL,
        FaultKind.STOP,
        FaultKind.DB_KILL,
    )
    assert parse_fault_kinds("all") == DEFAULT_FAULTS
    assert parse_fault_kinds("none") == ()
    with pytest.raises(UsageError, match="unknown fault 'explode'"):
        parse_fault_kinds("kill,explode")


def test_the_workload_follows_the_seed_and_covers_every_kind() -> None:
    first = Workload(seed=42, run_id="r").batch(400)
    again = Workload(seed=42, run_id="r").batch(400)
    assert first == again
    assert set(first.counts) == set(KINDS)
    assert first.size > 400  # chains and chords write several rows each


def test_every_workload_spec_is_unique() -> None:
    batch = Workload(seed=1, run_id="r").batch(300)
    specs = [s.to_new_task().spec_hash for s in batch.tasks]
    specs += [s.to_new_task().spec_hash for chain in batch.chains for s in chain]
    assert len(specs) == len(set(specs))
