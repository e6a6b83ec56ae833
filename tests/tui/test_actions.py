"""Task actions: when each is available and what it asks, the same for both task screens."""

from __future__ import annotations

from reproq.clock import FakeClock
from reproq.models import TaskStatus
from reproq.ops.observe import TaskFilter, TaskOrder, TaskRow
from reproq.tui.actions import (
    as_row,
    cancel_reason,
    confirm_bulk_cancel,
    confirm_bulk_retry,
    confirm_cancel,
    confirm_replay,
    confirm_retry,
    replay_reason,
    retry_reason,
    selection_reason,
)
from reproq.tui.demo_source import DemoSource
from tests.tui.conftest import T0


def _row(status: TaskStatus, *, cancel_requested: bool = False) -> TaskRow:
    return TaskRow(
        result_id=42,
        task_path="billing.charge",
        queue_name="billing",
        status=status,
        priority=0,
        attempts=3,
        max_attempts=3,
        enqueued_at=T0,
        run_after=None,
        started_at=None,
        finished_at=None,
        leased_by=None,
        leased_until=None,
        last_error=None,
        cancel_requested=cancel_requested,
        parent_id=None,
        workflow_id=None,
        worker_ids=(),
    )


def test_each_action_names_why_a_row_cannot_take_it() -> None:
    failed, ready = _row(TaskStatus.FAILED), _row(TaskStatus.READY)
    done = _row(TaskStatus.SUCCESSFUL)
    assert retry_reason(failed) is None
    assert retry_reason(ready) == "#42 is READY: only FAILED runs can be retried"
    assert replay_reason(done) is None
    assert replay_reason(ready) == (
        "#42 is READY: its spec is already active, a replay would be refused as a duplicate"
    )
    assert cancel_reason(ready) is None
    assert cancel_reason(done) == "#42 is SUCCESSFUL: it has already finished"
    stopping = _row(TaskStatus.RUNNING, cancel_requested=True)
    assert cancel_reason(stopping) == "#42 has already been asked to stop"
    assert retry_reason(None) == "no task run is highlighted"


def test_a_selection_is_actionable_when_any_of_its_rows_is() -> None:
    failed, done = _row(TaskStatus.FAILED), _row(TaskStatus.SUCCESSFUL)
    assert selection_reason("retry", [done, failed]) is None
    assert selection_reason("retry", [done]) == "none of the selected runs is FAILED"
    assert selection_reason("cancel", [done, failed]) == (
        "none of the selected runs can be cancelled (all finished)"
    )
    assert selection_reason("cancel", [done, _row(TaskStatus.WAITING)]) is None


def test_confirmations_say_what_happens_and_the_detail_screen_is_brief() -> None:
    failed, running = _row(TaskStatus.FAILED), _row(TaskStatus.RUNNING)
    assert confirm_retry(failed) == (
        "Retry #42?",
        "billing.charge is FAILED after 3/3 attempts. The same run goes back to READY "
        "and runs again.",
        "Retry",
    )
    assert confirm_retry(failed, brief=True)[1] == (
        "billing.charge goes back to READY and runs again (attempts start over)."
    )
    assert confirm_replay(failed)[1] == (
        "A new READY run of billing.charge is enqueued with the same spec (queue billing). "
        "#42 itself stays as it is."
    )
    assert confirm_replay(failed, brief=True)[1] == (
        "A new READY run of billing.charge is enqueued with the same spec."
    )
    assert confirm_cancel(running) == (
        "Cancel #42?",
        "billing.charge is RUNNING. Its worker is asked to stop it within a heartbeat.",
        "Cancel run",
    )
    assert confirm_cancel(_row(TaskStatus.READY))[1] == (
        "billing.charge is READY. It will not run; runs waiting on it are cancelled too."
    )
    assert confirm_cancel(running, brief=True)[1] == (
        "billing.charge is RUNNING. Its worker is asked to stop it."
    )
    assert confirm_cancel(_row(TaskStatus.WAITING), brief=True)[1] == "billing.charge is WAITING."


def test_bulk_confirmations_count_what_will_be_skipped() -> None:
    rows = [_row(TaskStatus.FAILED), _row(TaskStatus.SUCCESSFUL), _row(TaskStatus.RUNNING)]
    assert confirm_bulk_retry(rows) == (
        "Retry 3 selected runs?",
        "1 of them are FAILED and go back to READY; the other 2 are skipped.",
        "Retry",
    )
    assert confirm_bulk_retry(rows[:1])[1] == "They go back to READY and run again."
    assert confirm_bulk_cancel(rows) == (
        "Cancel 3 selected runs?",
        "1 of them can be cancelled (RUNNING ones are asked to stop); the other 2 are skipped.",
        "Cancel runs",
    )


def test_a_detail_acts_under_the_rules_of_its_row() -> None:
    source = DemoSource(FakeClock(T0))
    for row in source.tasks(TaskFilter(), order=TaskOrder.NEWEST, limit=40):
        detail_row = as_row(source.task(row.result_id))
        assert detail_row.status is row.status
        assert retry_reason(detail_row) == retry_reason(row)
        assert cancel_reason(detail_row) == cancel_reason(row)
