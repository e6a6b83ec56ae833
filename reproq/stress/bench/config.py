"""What ``reproq bench`` runs and how big: scenario names, sizes, the server it asks for."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = [
    "BENCH_SETTINGS",
    "LATENCY_MODES",
    "NOOP",
    "REPORTED_SETTINGS",
    "SCENARIOS",
    "BenchConfig",
]

BENCH_SETTINGS: dict[str, str] = {
    # Realistic durability: every commit waits for its WAL flush.
    "synchronous_commit": "on",
    "fsync": "on",
    "full_page_writes": "on",
    "max_connections": "200",
}
"""Server settings of the throwaway server a benchmark starts."""

REPORTED_SETTINGS: tuple[str, ...] = (
    "synchronous_commit",
    "fsync",
    "full_page_writes",
    "wal_level",
    "wal_sync_method",
    "commit_delay",
    "shared_buffers",
    "work_mem",
    "max_connections",
    "max_wal_size",
    "checkpoint_timeout",
    "effective_io_concurrency",
    "autovacuum",
    "autovacuum_naptime",
)
"""Server settings every result document records."""

NOOP = "reproq.stress.tasks.noop"
"""The no-op task the scenarios run."""

SCENARIOS: tuple[str, ...] = (
    "raw-claim",
    "enqueue",
    "e2e",
    "e2e-burst",
    "e2e-steady",
    "latency",
    "claim-growth",
)
"""Scenario names, in the order they run within a round (the reference first)."""

LATENCY_MODES: tuple[tuple[str, str | None], ...] = (
    ("notify", None),
    ("polling", None),
    ("polling-10ms", "10ms"),
)
"""Latency runs: (name, --poll-interval); every mode but ``notify`` has no insert NOTIFY."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BenchConfig:
    """What to run and how big."""

    scenarios: tuple[str, ...] = SCENARIOS
    dsn: str | None = None
    """Any database on the server to use; scenarios create databases of their own there."""
    repeat: int = 1
    """Rounds: each runs every chosen scenario once, so a round's figures are side by side."""
    raw_count: int = 50_000
    """Rows of the reference claim loop (loaded by COPY, then VACUUM ANALYZEd)."""
    raw_threads: int = 4
    raw_batch: int = 10
    enqueue_count: int = 100_000
    e2e_count: int = 20_000
    e2e_workers: int = 0
    """Worker processes of the multi-worker e2e run (0: one per CPU, at least 2)."""
    e2e_concurrency: int = 100
    e2e_wide_concurrency: int = 400
    """Slots of the one-worker run that has room to claim the next batch while one runs."""
    e2e_connections: int = 2
    """Connections (lanes) of the one-worker run with several, each with the wide slots."""
    executors: tuple[str, ...] = ("mock", "process", "subprocess")
    process_count: int = 5_000
    subprocess_count: int = 200
    burst_count: int = 50_000
    """Rows COPYed into the idle worker's empty queue."""
    burst_concurrency: tuple[int, ...] = (32, 100)
    """One burst run per entry, each with one worker of that many slots."""
    idle_seconds: float = 3.0
    """How long a burst or steady worker waits on its empty queue before the load comes."""
    autovacuum: bool = False
    """Let autovacuum analyze task_runs during e2e-burst and e2e-steady (off: the worker
    runs on the empty queue's statistics throughout, the worst case and a repeatable one)."""
    steady_rate: float = 5_000.0
    """Tasks per second the steady producers offer."""
    steady_seconds: float = 20.0
    steady_producers: int = 2
    steady_concurrency: int = 100
    latency_rate: float = 20.0
    latency_seconds: float = 10.0
    growth_history: tuple[int, ...] = (10_000, 1_000_000)
    growth_count: int = 20_000
    worker_args: tuple[str, ...] = ()
    """Extra ``reproq worker`` flags for every worker the bench starts."""
    timeout: float = 600.0
    """Give up on one run after this many seconds."""

    def scaled(self, factor: float) -> BenchConfig:
        """Every count (and the steady rate) multiplied by ``factor`` (at least 1), and the
        timed phases shortened with it, for quick or smoke runs."""

        def n(value: int) -> int:
            return max(1, round(value * factor))

        def seconds(value: float, least: float) -> float:
            return max(least, value * min(1.0, factor * 10))

        return dataclasses.replace(
            self,
            raw_count=n(self.raw_count),
            enqueue_count=n(self.enqueue_count),
            e2e_count=n(self.e2e_count),
            process_count=n(self.process_count),
            subprocess_count=n(self.subprocess_count),
            burst_count=n(self.burst_count),
            idle_seconds=seconds(self.idle_seconds, 0.5),
            steady_rate=max(10.0, self.steady_rate * factor),
            steady_seconds=seconds(self.steady_seconds, 1.0),
            latency_seconds=seconds(self.latency_seconds, 1.0),
            growth_history=tuple(n(h) for h in self.growth_history),
            growth_count=n(self.growth_count),
        )
