"""Prometheus metrics of a ``reproq up`` process, with the names Reproq Worker uses.

Two kinds of series share one :class:`~prometheus_client.CollectorRegistry`:

- **Counters and histograms fed by the workers** through the
  :class:`~reproq.engine.metrics_sink.MetricsSink`
  protocol (a worker accepts any sink; :class:`RuntimeMetrics` is the Prometheus one):
  ``reproq_tasks_claimed_total{queue}``, ``reproq_tasks_processed_total{status,queue}``
  (``status`` is ``success``, ``failure``, ``retry`` or ``cancelled``) and
  ``reproq_exec_duration_seconds{queue}``. They count what *this process* did.
- **Gauges read from the database on scrape** by :class:`DatabaseCollector`, through
  :mod:`reproq.ops.observe`, cached for a couple of seconds so that several scrapers cost one
  set of queries: ``reproq_queue_depth{queue,status}``, ``reproq_tasks_running{queue}``,
  ``reproq_workers``, ``reproq_concurrency_in_use``, ``reproq_concurrency_limit``,
  ``reproq_queue_paused{queue}``, ``reproq_queue_oldest_ready_age_seconds{queue}`` and
  ``reproq_db_up``. They describe the whole queue, whichever process is scraped.

Upstream's gauges carry no labels; these do, so ``sum(reproq_queue_depth)`` is the
upstream value and a single queue can still be watched.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum

import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from reproq.db import Conn, connect, first_line
from reproq.engine.metrics_sink import MetricsSink, NullSink
from reproq.errors import DatabaseError
from reproq.models import TaskStatus
from reproq.ops.observe import StatusSummary, status_summary
from reproq.queries import q

__all__ = [
    "DURATION_BUCKETS",
    "DatabaseCollector",
    "DatabaseReader",
    "MetricsSink",
    "NullSink",
    "ProcessedStatus",
    "RuntimeMetrics",
]

logger = logging.getLogger("reproq.metrics")

DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
"""Histogram buckets (seconds) for task execution time: from no-ops to hour-long jobs."""


class ProcessedStatus(StrEnum):
    """The ``status`` label of ``reproq_tasks_processed_total`` (upstream's values first)."""

    SUCCESS = "success"
    """The attempt succeeded (SUCCESSFUL)."""
    FAILURE = "failure"
    """The attempt failed for good (FAILED: attempts used up, or an error that never retries)."""
    RETRY = "retry"
    """The attempt failed and the task went back to READY for another attempt."""
    CANCELLED = "cancelled"
    """The attempt was stopped because an operator cancelled it."""


# --------------------------------------------------------------------------- database


class DatabaseReader:
    """One monitoring connection for scrapes and health checks, opened lazily.

    Thread-safe (the HTTP server answers on several threads). A failed query drops the
    connection; the next call reconnects. Results are cached for ``cache_seconds``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        cache_seconds: float = 2.0,
        statement_timeout: float = 5.0,
        stale_after: dt.timedelta | None = None,
    ) -> None:
        self.dsn = dsn
        self.cache_seconds = cache_seconds
        self.statement_timeout = statement_timeout
        self.stale_after = stale_after if stale_after is not None else dt.timedelta(minutes=3)
        self._lock = threading.Lock()
        self._conn: Conn | None = None
        self._summary: StatusSummary | None = None
        self._summary_at = float("-inf")
        self._summary_error: str | None = None
        self._ping_at = float("-inf")
        self._ping_error: str | None = None

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        with self._lock:
            self._drop()

    def summary(self) -> StatusSummary | None:
        """The latest :func:`reproq.ops.observe.status_summary` (None if the database failed)."""
        with self._lock:
            if time.monotonic() - self._summary_at >= self.cache_seconds:
                try:
                    conn = self._connection()
                    # Finished rows are not exported: cap their counting at one row.
                    self._summary = status_summary(
                        conn,
                        stale_after=self.stale_after,
                        window=dt.timedelta(minutes=1),
                        count_cap=1,
                    )
                    self._summary_error = None
                    self._note_ok()
                except (DatabaseError, psycopg.Error) as exc:
                    self._summary = None
                    self._summary_error = self._failed(exc)
                self._summary_at = time.monotonic()
            return self._summary

    @property
    def last_error(self) -> str | None:
        """Why the last summary failed (None when it succeeded)."""
        return self._summary_error

    def ping(self) -> str | None:
        """None when the database answers, else the reason (cached like :meth:`summary`)."""
        with self._lock:
            if time.monotonic() - self._ping_at >= self.cache_seconds:
                try:
                    self._connection().execute(q("runtime_ping")).fetchone()
                    self._note_ok()
                except (DatabaseError, psycopg.Error) as exc:
                    self._ping_error = self._failed(exc)
                    self._ping_at = time.monotonic()
            return self._ping_error

    def _note_ok(self) -> None:
        self._ping_error = None
        self._ping_at = time.monotonic()

    def _failed(self, exc: Exception) -> str:
        reason = first_line(str(exc)) or type(exc).__name__
        broken = self._conn is not None and (self._conn.closed or self._conn.broken)
        if broken or isinstance(exc, psycopg.Error):
            self._drop()
        return reason

    def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            conn = connect(self.dsn, application_name="reproq-metrics")
            try:
                conn.execute(
                    q("runtime_statement_timeout"),
                    {"timeout": f"{int(self.statement_timeout * 1000)}ms"},
                )
            except psycopg.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class DatabaseCollector(Collector):
    """Gauges describing the whole queue, read through a :class:`DatabaseReader` on scrape."""

    def __init__(self, reader: DatabaseReader) -> None:
        self.reader = reader

    def collect(self) -> Iterator[Metric]:
        """Yield the gauges; only ``reproq_db_up 0`` when the database cannot be read."""
        summary = self.reader.summary()
        db_up = GaugeMetricFamily(
            "reproq_db_up", "1 when the last read of the queue's database succeeded."
        )
        db_up.add_metric([], 0.0 if summary is None else 1.0)
        yield db_up
        if summary is None:
            return
        depth = GaugeMetricFamily(
            "reproq_queue_depth",
            "Tasks waiting to run (READY, including scheduled ones, and WAITING).",
            labels=["queue", "status"],
        )
        running = GaugeMetricFamily("reproq_tasks_running", "Tasks RUNNING now.", labels=["queue"])
        paused = GaugeMetricFamily(
            "reproq_queue_paused", "1 when the queue is paused.", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "reproq_queue_oldest_ready_age_seconds",
            "Age of the longest-waiting due READY task (0 when none).",
            labels=["queue"],
        )
        for queue in summary.queues:
            depth.add_metric([queue.queue, TaskStatus.READY], queue.ready + queue.scheduled)
            depth.add_metric([queue.queue, TaskStatus.WAITING], queue.waiting)
            running.add_metric([queue.queue], queue.running)
            paused.add_metric([queue.queue], 1.0 if queue.paused else 0.0)
            oldest.add_metric([queue.queue], queue.oldest_ready_age_seconds or 0.0)
        yield depth
        yield running
        yield paused
        yield oldest
        alive = [w for w in summary.workers if not w.stale]
        workers = GaugeMetricFamily(
            "reproq_workers", "Registered workers seen recently (any host)."
        )
        workers.add_metric([], len(alive))
        yield workers
        stale = GaugeMetricFamily("reproq_workers_stale", "Registered workers not seen recently.")
        stale.add_metric([], len(summary.workers) - len(alive))
        yield stale
        in_use = GaugeMetricFamily(
            "reproq_concurrency_in_use", "Task slots in use across all workers (RUNNING tasks)."
        )
        in_use.add_metric([], summary.totals.get(TaskStatus.RUNNING, 0))
        yield in_use
        limit = GaugeMetricFamily(
            "reproq_concurrency_limit", "Task slots across all workers seen recently."
        )
        limit.add_metric([], sum(w.concurrency or 0 for w in alive))
        yield limit


class _ComponentCollector(Collector):
    """``reproq_component_up{component}``: 1 while a component of this process runs."""

    def __init__(self, components: Callable[[], Mapping[str, bool]]) -> None:
        self.components = components

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "reproq_component_up",
            "1 while a component of this reproq process (pool, beat, ...) is running.",
            labels=["component"],
        )
        for name, up in sorted(self.components().items()):
            family.add_metric([name], 1.0 if up else 0.0)
        yield family


# --------------------------------------------------------------------------- registry


class RuntimeMetrics:
    """The Prometheus registry of one process and the :class:`MetricsSink` feeding it.

    Every instance has its own registry (nothing goes to prometheus-client's global
    one), so several runtimes in one interpreter, as in tests, never collide.
    """

    def __init__(
        self,
        *,
        reader: DatabaseReader | None = None,
        components: Callable[[], Mapping[str, bool]] | None = None,
        process_metrics: bool = True,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.claimed = Counter(
            "reproq_tasks_claimed_total",
            "Tasks claimed by this process.",
            ["queue"],
            registry=self.registry,
        )
        self.processed = Counter(
            "reproq_tasks_processed_total",
            "Task attempts finished by this process, by outcome.",
            ["status", "queue"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "reproq_exec_duration_seconds",
            "Execution time of task attempts finished by this process.",
            ["queue"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        if reader is not None:
            self.registry.register(DatabaseCollector(reader))
        if components is not None:
            self.registry.register(_ComponentCollector(components))
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def task_claimed(self, queue: str, count: int = 1) -> None:
        """Count *count* claims from *queue*."""
        if count > 0:
            self.claimed.labels(queue=queue).inc(count)

    def task_finished(self, queue: str, status: str, seconds: float | None = None) -> None:
        """Count one finished attempt and, when it ran, observe its duration."""
        self.processed.labels(status=str(status), queue=queue).inc()
        if seconds is not None and seconds >= 0:
            self.duration.labels(queue=queue).observe(seconds)
