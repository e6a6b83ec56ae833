"""Operator actions on task runs, for the Tasks and the Task detail screens alike.

For retry, replay and cancel: the job that runs against the data source, why the action
is unavailable for a run (the footer greys it out and says why), and the confirmation it
asks first. Which status allows which action comes from :mod:`reproq.ops.admin_rules`,
the rules the writes themselves apply.
"""

from __future__ import annotations

from collections.abc import Sequence

from reproq.models import TaskStatus
from reproq.ops.admin import CancelOutcome
from reproq.ops.admin_rules import ACTIVE_STATUSES, CANCELLABLE_STATUSES
from reproq.ops.observe import TaskDetail, TaskRow
from reproq.tui.source import ActionJob, DataSource

__all__ = [
    "Confirm",
    "as_row",
    "bulk_cancel_job",
    "bulk_retry_job",
    "cancel_job",
    "cancel_reason",
    "confirm_bulk_cancel",
    "confirm_bulk_retry",
    "confirm_cancel",
    "confirm_replay",
    "confirm_retry",
    "replay_job",
    "replay_reason",
    "retry_job",
    "retry_reason",
    "selection_reason",
]

Confirm = tuple[str, str, str]
"""(title, message, verb): the question :meth:`ReproqApp.perform` asks before a job."""


# --------------------------------------------------------------------------- jobs


def retry_job(result_id: int) -> ActionJob:
    """The job that retries one run."""

    def job(source: DataSource, _answer: str) -> str:
        result = source.retry(result_id)
        text = f"retried #{result_id}: READY again"
        if result.revived:
            text += f" ({len(result.revived)} waiting run(s) revived)"
        return text

    return job


def replay_job(result_id: int) -> ActionJob:
    """The job that replays one run."""

    def job(source: DataSource, _answer: str) -> str:
        result = source.replay(result_id)
        return f"replayed #{result.source_id} as new run #{result.new_id}"

    return job


def cancel_job(result_id: int) -> ActionJob:
    """The job that cancels one run."""

    def job(source: DataSource, _answer: str) -> str:
        result = source.cancel(result_id)
        if result.status is CancelOutcome.CANCEL_REQUESTED:
            return f"asked the worker running #{result_id} to stop"
        text = f"cancelled #{result_id}"
        if result.also_cancelled:
            text += f" and {len(result.also_cancelled)} waiting run(s) after it"
        return text

    return job


def bulk_retry_job(ids: Sequence[int]) -> ActionJob:
    """The job that retries many runs and says what it skipped."""
    return lambda source, _answer: source.bulk_retry(ids).summary("retried")


def bulk_cancel_job(ids: Sequence[int]) -> ActionJob:
    """The job that cancels many runs and says what it skipped."""
    return lambda source, _answer: source.bulk_cancel(ids).summary("cancelled")


# --------------------------------------------------------------------------- availability


def as_row(detail: TaskDetail) -> TaskRow:
    """The listing view of a detail, so both screens share one set of action rules."""
    return TaskRow(
        result_id=detail.result_id,
        task_path=detail.task_path,
        queue_name=detail.queue_name,
        status=detail.status,
        priority=detail.priority,
        attempts=detail.attempts,
        max_attempts=detail.max_attempts,
        enqueued_at=detail.enqueued_at,
        run_after=detail.run_after,
        started_at=detail.started_at,
        finished_at=detail.finished_at,
        leased_by=detail.leased_by,
        leased_until=detail.leased_until,
        last_error=detail.last_error,
        cancel_requested=detail.cancel_requested,
        parent_id=detail.parent_id,
        workflow_id=detail.workflow_id,
        worker_ids=detail.worker_ids,
    )


def retry_reason(row: TaskRow | None) -> str | None:
    """Why a single row cannot be retried (None: it can)."""
    if row is None:
        return "no task run is highlighted"
    if row.status is not TaskStatus.FAILED:
        return f"#{row.result_id} is {row.status}: only FAILED runs can be retried"
    return None


def replay_reason(row: TaskRow | None) -> str | None:
    """Why a single row cannot be replayed (None: it can)."""
    if row is None:
        return "no task run is highlighted"
    if row.status in ACTIVE_STATUSES:
        return (
            f"#{row.result_id} is {row.status}: its spec is already active, "
            "a replay would be refused as a duplicate"
        )
    return None


def cancel_reason(row: TaskRow | None) -> str | None:
    """Why a single row cannot be cancelled (None: it can)."""
    if row is None:
        return "no task run is highlighted"
    if row.status not in CANCELLABLE_STATUSES:
        return f"#{row.result_id} is {row.status}: it has already finished"
    if row.cancel_requested:
        return f"#{row.result_id} has already been asked to stop"
    return None


def selection_reason(action: str, rows: Sequence[TaskRow]) -> str | None:
    """Why ``action`` (``retry`` or ``cancel``) would do nothing to any of ``rows``."""
    if action == "retry" and not any(r.status is TaskStatus.FAILED for r in rows):
        return "none of the selected runs is FAILED"
    if action == "cancel" and not any(cancel_reason(r) is None for r in rows):
        return "none of the selected runs can be cancelled (all finished)"
    return None


# --------------------------------------------------------------------------- confirmations
# ``brief`` is the wording of the detail screen, where the run is already shown in full.


def confirm_retry(row: TaskRow, *, brief: bool = False) -> Confirm:
    """The question before retrying one run."""
    if brief:
        what = f"{row.task_path} goes back to READY and runs again (attempts start over)."
    else:
        what = (
            f"{row.task_path} is FAILED after {row.attempts}/{row.max_attempts} "
            "attempts. The same run goes back to READY and runs again."
        )
    return (f"Retry #{row.result_id}?", what, "Retry")


def confirm_replay(row: TaskRow, *, brief: bool = False) -> Confirm:
    """The question before replaying one run."""
    what = f"A new READY run of {row.task_path} is enqueued with the same spec"
    if brief:
        what += "."
    else:
        what += f" (queue {row.queue_name}). #{row.result_id} itself stays as it is."
    return (f"Replay #{row.result_id}?", what, "Replay")


def confirm_cancel(row: TaskRow, *, brief: bool = False) -> Confirm:
    """The question before cancelling one run."""
    running = row.status is TaskStatus.RUNNING
    if brief:
        what = f"{row.task_path} is {row.status}." + (
            " Its worker is asked to stop it." if running else ""
        )
    else:
        consequence = (
            "Its worker is asked to stop it within a heartbeat."
            if running
            else "It will not run; runs waiting on it are cancelled too."
        )
        what = f"{row.task_path} is {row.status}. {consequence}"
    return (f"Cancel #{row.result_id}?", what, "Cancel run")


def confirm_bulk_retry(rows: Sequence[TaskRow]) -> Confirm:
    """The question before retrying a selection (the runs not FAILED are skipped)."""
    failed = sum(1 for r in rows if r.status is TaskStatus.FAILED)
    what = (
        "They go back to READY and run again."
        if failed == len(rows)
        else f"{failed} of them are FAILED and go back to READY; the other "
        f"{len(rows) - failed} are skipped."
    )
    return (f"Retry {len(rows)} selected runs?", what, "Retry")


def confirm_bulk_cancel(rows: Sequence[TaskRow]) -> Confirm:
    """The question before cancelling a selection (finished runs are skipped)."""
    live = sum(1 for r in rows if cancel_reason(r) is None)
    what = (
        "READY and WAITING runs are cancelled, RUNNING ones are asked to stop."
        if live == len(rows)
        else f"{live} of them can be cancelled (RUNNING ones are asked to stop); "
        f"the other {len(rows) - live} are skipped."
    )
    return (f"Cancel {len(rows)} selected runs?", what, "Cancel runs")
