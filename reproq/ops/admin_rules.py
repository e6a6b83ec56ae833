"""The rules of operator writes, without SQL: which status allows which action, what each
action returns, and how a bulk action skips the rows it may not touch.

:mod:`reproq.ops.admin` applies them to the database; the TUI's demo source applies the
same functions to its rows in memory, so both refuse the same things with the same words.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from reproq.errors import ActionNotAllowed, AlreadyQueued, TaskNotFound
from reproq.models import TaskStatus

__all__ = [
    "ACTIVE_STATUSES",
    "CANCELLABLE_STATUSES",
    "FINISHED_STATUSES",
    "SKIP_DUPLICATE",
    "SKIP_FINISHED",
    "SKIP_NOT_FAILED",
    "SKIP_NOT_FOUND",
    "BulkResult",
    "CancelOutcome",
    "CancelResult",
    "LimitRemoved",
    "QueueState",
    "ReplayResult",
    "RetryResult",
    "ScheduleState",
    "cancel_each",
    "cancel_outcome",
    "retry_each",
    "retry_refusal",
]

FINISHED_STATUSES: tuple[TaskStatus, ...] = (
    TaskStatus.SUCCESSFUL,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
)
"""The states ``prune_finished`` may delete by default (and the only ones it accepts)."""

CANCELLABLE_STATUSES: tuple[TaskStatus, ...] = (
    TaskStatus.READY,
    TaskStatus.WAITING,
    TaskStatus.RUNNING,
)
"""The states a cancel applies to (a RUNNING row only gets a cancel request)."""

ACTIVE_STATUSES: tuple[TaskStatus, ...] = (TaskStatus.READY, TaskStatus.RUNNING)
"""A spec in one of these states is active: an identical one is refused as a duplicate."""

# Reasons used in BulkResult.skipped: short, so summaries group them.
SKIP_NOT_FOUND = "not found"
SKIP_NOT_FAILED = "not FAILED"
SKIP_FINISHED = "already finished"
SKIP_DUPLICATE = "duplicate of an active task"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayResult:
    """A replay: the new READY row and the row whose spec it copied."""

    new_id: int
    source_id: int


class CancelOutcome(StrEnum):
    """What a cancel did to the row."""

    CANCELLED = "cancelled"
    """The row was READY or WAITING and is now CANCELLED."""
    CANCEL_REQUESTED = "cancel_requested"
    """The row is RUNNING; its worker stops it within one heartbeat."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CancelResult:
    """A cancel of one row, with the WAITING descendants cancelled along with it."""

    result_id: int
    status: CancelOutcome
    also_cancelled: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryResult:
    """A retried row, with the chain descendants / chord callback waiting on it again."""

    result_id: int
    revived: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class BulkResult:
    """An action over many rows: the ids it changed and why it skipped the others."""

    done: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)

    def summary(self, verb: str) -> str:
        """One line for people: ``"retried 12, skipped 3 not FAILED"``."""
        text = f"{verb} {len(self.done)}"
        if self.skipped:
            reasons = Counter(self.skipped.values())
            parts = [f"{n} {reason}" for reason, n in sorted(reasons.items())]
            text += ", skipped " + ", ".join(parts)
        return text


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueState:
    """The pause state of one queue after a pause or resume."""

    queue: str
    paused: bool
    paused_at: dt.datetime | None
    reason: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class LimitRemoved:
    """A removed rate limit; ``reset`` when it was the ``global`` row, set back to rate 0."""

    key: str
    reset: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleState:
    """A schedule after enabling or disabling it."""

    name: str
    enabled: bool


# --------------------------------------------------------------------------- rules


def retry_refusal(result_id: int, status: TaskStatus | str) -> ActionNotAllowed:
    """The error for a retry of a row that is not FAILED (only FAILED rows are retried)."""
    finished = status in (TaskStatus.SUCCESSFUL, TaskStatus.CANCELLED)
    hint = " (replay it to run the spec again)" if finished else ""
    return ActionNotAllowed(f"task {result_id} is {status}: only FAILED tasks can be retried{hint}")


def cancel_outcome(result_id: int, status: TaskStatus) -> CancelOutcome:
    """What a cancel does to a row in ``status``: a finished row → :class:`ActionNotAllowed`.

    RUNNING rows get a cancel request (their worker stops them); READY and WAITING rows
    are cancelled at once.
    """
    if status is TaskStatus.RUNNING:
        return CancelOutcome.CANCEL_REQUESTED
    if status in CANCELLABLE_STATUSES:
        return CancelOutcome.CANCELLED
    raise ActionNotAllowed(
        f"task {result_id} is {status}: only READY, WAITING or RUNNING tasks can be cancelled"
    )


def retry_each(ids: Iterable[int], retry: Callable[[int], object]) -> BulkResult:
    """Retry each id once with ``retry``; ids it refuses are skipped with the reason."""
    done: list[int] = []
    skipped: dict[int, str] = {}
    for result_id in dict.fromkeys(ids):
        try:
            retry(result_id)
        except TaskNotFound:
            skipped[result_id] = SKIP_NOT_FOUND
        except ActionNotAllowed:
            skipped[result_id] = SKIP_NOT_FAILED
        except AlreadyQueued:
            skipped[result_id] = SKIP_DUPLICATE
        else:
            done.append(result_id)
    return BulkResult(done=done, skipped=skipped)


def cancel_each(ids: Iterable[int], cancel: Callable[[int], CancelResult]) -> BulkResult:
    """Cancel each id once with ``cancel``; finished or unknown ids are skipped.

    ``done`` lists every id that was cancelled or got a cancel request, including ids of
    the selection that were cancelled as descendants of an earlier one.
    """
    done: list[int] = []
    skipped: dict[int, str] = {}
    cascaded: set[int] = set()
    for result_id in dict.fromkeys(ids):
        if result_id in cascaded:
            done.append(result_id)
            continue
        try:
            outcome = cancel(result_id)
        except TaskNotFound:
            skipped[result_id] = SKIP_NOT_FOUND
        except ActionNotAllowed:
            skipped[result_id] = SKIP_FINISHED
        else:
            done.append(result_id)
            cascaded.update(outcome.also_cancelled)
    return BulkResult(done=done, skipped=skipped)
