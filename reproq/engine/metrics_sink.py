"""What a worker reports as it works, to whoever counts: the runtime's Prometheus metrics
(:class:`reproq.runtime.metrics.RuntimeMetrics`) or nothing at all.

The engine defines the seam and the runtime implements it, so the engine needs nothing
from the layer above it.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["MetricsSink", "NullSink"]


class MetricsSink(Protocol):
    """What a worker reports as it works; every method must be cheap and never raise."""

    def task_claimed(self, queue: str, count: int = 1) -> None:
        """*count* tasks of *queue* were claimed by this process."""

    def task_finished(self, queue: str, status: str, seconds: float | None = None) -> None:
        """One attempt of a task of *queue* ended.

        *status* is a :class:`reproq.runtime.metrics.ProcessedStatus` value; *seconds* is
        how long it ran (None when it never started, e.g. an expired task).
        """


class NullSink:
    """A :class:`MetricsSink` that records nothing (the default of a worker)."""

    def task_claimed(self, queue: str, count: int = 1) -> None:
        """Ignore a claim."""

    def task_finished(self, queue: str, status: str, seconds: float | None = None) -> None:
        """Ignore a finished attempt."""
