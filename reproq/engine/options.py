"""A worker's options and its counters.

:class:`WorkerOptions` is everything that shapes one worker, checked by
:meth:`~WorkerOptions.validate`, which names the first bad setting. :class:`WorkerStats`
are the counters a worker keeps (what it reports elsewhere goes to a
:class:`~reproq.engine.metrics_sink.MetricsSink`).
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from reproq.engine import bounds
from reproq.errors import ConfigError

__all__ = ["MIB", "WorkerOptions", "WorkerStats", "default_worker_id"]

MIB = 1024 * 1024


def default_worker_id() -> str:
    """``$WORKER_ID``, else ``<hostname>-<pid>``."""
    return os.environ.get("WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerOptions:
    """Everything that shapes one worker; all durations are in seconds.

    ``allowed_task_modules`` has no permissive default: a worker refuses to start until
    it is told which task paths it may import (``("myapp.tasks.",)``, or ``("*",)`` for
    any). Each entry is a module prefix; ``myapp.tasks`` and ``myapp.tasks.`` both allow
    ``myapp.tasks.send`` but not ``myapp.tasksevil.run``.

    ``reclaim_interval_seconds=math.inf`` switches this worker's reclaiming of expired
    leases off (another worker or process must then do it). ``executor_options`` are the
    keyword arguments of the executor class (see :func:`reproq.executors.make_executor`).
    Several workers in one process need distinct ``worker_id`` values.
    """

    queues: tuple[str, ...] = ("default",)
    concurrency: int = bounds.DEFAULT_CONCURRENCY
    worker_id: str = field(default_factory=default_worker_id)
    executor: str = "thread"
    executor_options: Mapping[str, Any] = field(default_factory=dict)
    allowed_task_modules: tuple[str, ...] = ()
    lease_seconds: float = 300.0
    heartbeat_seconds: float = 60.0
    reclaim_interval_seconds: float = 60.0
    priority_aging_factor: float = 60.0  # seconds of waiting worth one priority point; 0 = off
    shutdown_timeout: float = 30.0
    logs_dir: str | None = None
    max_payload_bytes: int = MIB
    max_output_bytes: int = MIB
    poll_interval: float = 0.5  # fallback poll when idle; doubles up to max_poll_interval
    max_poll_interval: float = 5.0
    claim_batch: int = 200  # most rows one claim statement takes
    connections: int = 1  # lanes, each with its own connection and a share of the slots
    max_timeout_seconds: float | None = None  # caps each task's timeout_seconds (pool setting)
    statement_timeout: float = 15.0  # the worker's statements; a frozen server shows 5 s later

    def __post_init__(self) -> None:
        # Accept lists (config files, callers) but store immutable values.
        object.__setattr__(self, "queues", tuple(self.queues))
        object.__setattr__(self, "allowed_task_modules", tuple(self.allowed_task_modules))
        object.__setattr__(self, "executor_options", MappingProxyType(dict(self.executor_options)))

    def validate(self) -> None:
        """Raise :class:`~reproq.errors.ConfigError` naming the first bad setting."""
        problems: list[tuple[str, str]] = []
        if not self.queues or not all(isinstance(q_, str) and q_ for q_ in self.queues):
            problems.append(("queues", "name at least one queue"))
        if not 1 <= self.concurrency <= bounds.MAX_CONCURRENCY:
            problems.append(
                (
                    "concurrency",
                    f"must be between 1 and {bounds.MAX_CONCURRENCY}, got {self.concurrency}",
                )
            )
        if not self.worker_id:
            problems.append(("worker_id", "must not be empty"))
        if not any(m.strip() for m in self.allowed_task_modules):
            problems.append(
                (
                    "allowed_task_modules",
                    "is required: list the task module prefixes this worker may import "
                    "(e.g. myapp.tasks.), or '*' to allow any",
                )
            )
        if self.lease_seconds <= 0:
            problems.append(("lease_seconds", "must be positive"))
        if not 0 < self.heartbeat_seconds < self.lease_seconds:
            problems.append(
                (
                    "heartbeat_seconds",
                    f"must be positive and shorter than lease_seconds ({self.lease_seconds:g})",
                )
            )
        for key in ("reclaim_interval_seconds", "poll_interval", "max_poll_interval"):
            if getattr(self, key) <= 0:
                problems.append((key, "must be positive"))
        for key in ("priority_aging_factor", "shutdown_timeout"):
            if getattr(self, key) < 0:
                problems.append((key, "must not be negative"))
        for key in ("max_payload_bytes", "max_output_bytes", "claim_batch"):
            if getattr(self, key) < 1:
                problems.append((key, "must be at least 1"))
        if not 1 <= self.connections <= max(self.concurrency, 1):
            problems.append(
                (
                    "connections",
                    f"must be between 1 and concurrency ({self.concurrency}): every "
                    f"connection's lane needs a slot, got {self.connections}",
                )
            )
        problems.extend(self._beyond_bounds())
        if problems:
            key, message = problems[0]
            raise ConfigError(message, key=key)

    def _beyond_bounds(self) -> list[tuple[str, str]]:
        """Settings larger than the worker can run (:mod:`reproq.engine.bounds`)."""
        limits: list[tuple[str, float | None, float]] = [
            ("connections", self.connections, bounds.MAX_CONNECTIONS),
            ("lease_seconds", self.lease_seconds, bounds.MAX_LEASE_SECONDS),
            ("max_payload_bytes", self.max_payload_bytes, bounds.MAX_BYTES),
            ("max_output_bytes", self.max_output_bytes, bounds.MAX_BYTES),
            ("max_timeout_seconds", self.max_timeout_seconds, bounds.MAX_DURATION),
        ]
        for key in (
            "heartbeat_seconds",
            "priority_aging_factor",
            "shutdown_timeout",
            "poll_interval",
            "max_poll_interval",
            "statement_timeout",
        ):
            limits.append((key, getattr(self, key), bounds.MAX_DURATION))
        if math.isfinite(self.reclaim_interval_seconds):  # inf switches reclaiming off
            limits.append(
                ("reclaim_interval_seconds", self.reclaim_interval_seconds, bounds.MAX_DURATION)
            )
        return [
            (key, f"must be at most {limit}, got {value:g}")
            for key, value, limit in limits
            if value is not None and not value <= limit
        ]


@dataclass(kw_only=True, slots=True)
class WorkerStats:
    """A worker's counters since it started.

    Each lane counts into one of these; :meth:`reproq.engine.worker.Worker.stats` hands
    out a copy (a snapshot), with ``running`` and ``held`` as they are at that moment.
    """

    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    lease_lost: int = 0  # results discarded because the lease was gone
    given_back: int = 0
    timed_out: int = 0
    reclaimed: int = 0  # expired leases of other (dead) workers handled by this one
    running: int = 0
    held: int = 0  # leases held now (running or waiting to be recorded)

    def __add__(self, other: WorkerStats) -> WorkerStats:
        """Both sets of counters added up (the lanes of one worker)."""
        return WorkerStats(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )
