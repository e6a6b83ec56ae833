"""The demo source follows the same rules as the real one and is deterministic."""

from __future__ import annotations

import datetime as dt

import pytest

from reproq.clock import FakeClock
from reproq.errors import ActionNotAllowed, AlreadyQueued
from reproq.models import TaskStatus
from reproq.ops.observe import TaskFilter, TaskOrder, parse_filter
from reproq.tui.demo_source import DemoSource
from tests.tui.conftest import T0


def _rows(source: DemoSource, text: str = "") -> list[int]:
    flt = parse_filter(text) if text else TaskFilter()
    return [r.result_id for r in source.tasks(flt, order=TaskOrder.NEWEST, limit=1000)]


def test_same_seed_and_clock_give_the_same_data() -> None:
    a, b = DemoSource(FakeClock(T0)), DemoSource(FakeClock(T0))
    assert a.tasks(TaskFilter(), order=TaskOrder.NEWEST, limit=50) == b.tasks(
        TaskFilter(), order=TaskOrder.NEWEST, limit=50
    )
    assert a.overview(window=dt.timedelta(hours=1)) == b.overview(window=dt.timedelta(hours=1))


def test_time_moving_makes_the_fleet_work() -> None:
    clock = FakeClock(T0)
    source = DemoSource(clock)
    before = _rows(source)
    clock.advance(30)
    assert _rows(source) != before


def test_filter_matches_like_the_database() -> None:
    source = DemoSource(FakeClock(T0))
    rows = source.tasks(
        parse_filter("status:failed task:billing.*"), order=TaskOrder.OLDEST, limit=1000
    )
    assert rows and all(r.status is TaskStatus.FAILED for r in rows)
    assert all(r.task_path.startswith("billing.") for r in rows)
    assert [r.result_id for r in rows] == sorted(r.result_id for r in rows)


def test_retry_only_failed_and_replay_refuses_an_active_duplicate() -> None:
    source = DemoSource(FakeClock(T0))
    failed = _rows(source, "status:failed")[0]
    ready = _rows(source, "status:ready")[0]
    with pytest.raises(ActionNotAllowed, match="only FAILED"):
        source.retry(ready)
    source.retry(failed)
    assert source.task(failed).status is TaskStatus.READY
    with pytest.raises(AlreadyQueued):
        source.replay(failed)  # itself is now the active twin


def test_bulk_actions_report_skips_like_admin() -> None:
    source = DemoSource(FakeClock(T0))
    failed = _rows(source, "status:failed")[:2]
    done = _rows(source, "status:successful")[:1]
    assert source.bulk_retry([*failed, *done]).summary("retried") == (
        "retried 2, skipped 1 not FAILED"
    )
    ready = _rows(source, "status:ready")[:1]
    assert source.bulk_cancel([*ready, *done]).summary("cancelled") == (
        "cancelled 1, skipped 1 already finished"
    )


def test_refusals_are_worded_like_admin() -> None:
    source = DemoSource(FakeClock(T0))
    done = _rows(source, "status:successful")[0]
    with pytest.raises(ActionNotAllowed) as retried:
        source.retry(done)
    assert str(retried.value) == (
        f"task {done} is SUCCESSFUL: only FAILED tasks can be retried "
        "(replay it to run the spec again)"
    )
    with pytest.raises(ActionNotAllowed) as cancelled:
        source.cancel(done)
    assert str(cancelled.value) == (
        f"task {done} is SUCCESSFUL: only READY, WAITING or RUNNING tasks can be cancelled"
    )
