"""What a worker reports as it works, to whoever counts: the runtime's Prometheus metrics
and event stream (:class:`reproq.runtime.metrics.RuntimeMetrics`) or nothing at all.

The engine defines the seam and the runtime implements it, so the engine needs nothing
from the layer above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from reproq.engine.claim import ClaimedRow
    from reproq.engine.completion import Completion

__all__ = ["MetricsSink", "NullSink"]


class MetricsSink(Protocol):
    """What a worker reports as it works; every method must be cheap and never raise."""

    def task_claimed(self, queue: str, count: int = 1) -> None:
        """*count* tasks of *queue* were claimed by this process."""

    def task_started(self, worker_id: str, row: ClaimedRow, task_path: str) -> None:
        """The attempt of *row* (running *task_path*) is handed to the executor."""

    def task_finished(
        self,
        queue: str,
        status: str,
        seconds: float | None = None,
        *,
        worker_id: str = "",
        row: ClaimedRow | None = None,
        completion: Completion | None = None,
    ) -> None:
        """One attempt of a task of *queue* was recorded.

        *status* is a :class:`reproq.runtime.metrics.ProcessedStatus` value; *seconds* is
        how long it ran (None when it never started, e.g. an expired task);
        *row* and *completion*, when given, describe it for the event stream.
        """

    def db_operation(self, operation: str, seconds: float, queues: Sequence[str] = ()) -> None:
        """A round trip of kind *operation* (``claim``, ``complete``, ``heartbeat``,
        ``reclaim``) took *seconds*; a claim names the *queues* it claimed from."""


class NullSink:
    """A :class:`MetricsSink` that records nothing (the default of a worker)."""

    def task_claimed(self, queue: str, count: int = 1) -> None:
        """Ignore a claim."""

    def task_started(self, worker_id: str, row: ClaimedRow, task_path: str) -> None:
        """Ignore a start."""

    def task_finished(
        self,
        queue: str,
        status: str,
        seconds: float | None = None,
        *,
        worker_id: str = "",
        row: ClaimedRow | None = None,
        completion: Completion | None = None,
    ) -> None:
        """Ignore a finished attempt."""

    def db_operation(self, operation: str, seconds: float, queues: Sequence[str] = ()) -> None:
        """Ignore a round trip."""
