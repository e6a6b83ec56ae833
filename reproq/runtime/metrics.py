"""Prometheus metrics of a reproq process: every name Reproq Worker exports, and more.

All series share one :class:`~prometheus_client.CollectorRegistry` per process.

**Reproq Worker's names**, with its types and labels, so its dashboards and alerts work:

- fed by the workers of this process through the
  :class:`~reproq.engine.metrics_sink.MetricsSink` protocol (:class:`RuntimeMetrics` is
  the Prometheus sink): ``reproq_tasks_claimed_total{queue}``,
  ``reproq_tasks_processed_total{status,queue}`` and
  ``reproq_tasks_completed_total{queue,status}`` (``status`` ``success`` or ``failure``;
  a retry and a cancel are failures, as upstream counts them),
  ``reproq_exec_duration_seconds{queue}``, ``reproq_claim_duration_seconds{queue}`` and
  ``reproq_db_operation_duration_seconds{operation}``;
- about this process: ``reproq_worker_cpu_usage_percent``, ``reproq_worker_mem_usage_bytes``
  (resident memory), ``reproq_db_pool_connections_in_use`` (open database connections)
  and ``reproq_db_pool_wait_count_total`` (always 0: reproq keeps its connections and
  never waits for one);
- read from the database on scrape, about the whole queue, without labels:
  ``reproq_queue_depth`` (READY and WAITING), ``reproq_tasks_running``, ``reproq_workers``,
  ``reproq_concurrency_in_use``, ``reproq_concurrency_limit``, ``reproq_queues_paused``
  and ``reproq_concurrency_blocked_tasks``.
- ``reproq_queue_wait_duration_seconds{queue}`` is declared but not observed: a claim
  does not read when the row was enqueued.

**reproq's own**, with more detail: ``reproq_task_outcomes_total{queue,outcome}``
(``success``, ``failure``, ``retry``, ``cancelled``), and, per queue,
``reproq_queue_depth_by_queue{queue,status}``, ``reproq_tasks_running_by_queue{queue}``,
``reproq_queue_paused{queue}``, ``reproq_queue_oldest_ready_age_seconds{queue}``, plus
``reproq_workers_stale``, ``reproq_db_up`` and ``reproq_component_up{component}``.

Database gauges are read through :mod:`reproq.ops.observe` on one monitoring connection,
cached for a couple of seconds so that several scrapers cost one set of queries.
``reproq_workers`` counts workers seen within three heartbeats (upstream counts every
registered row, dead or alive).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from reproq.db import Conn, connect, first_line, open_connections
from reproq.engine.metrics_sink import MetricsSink, NullSink
from reproq.errors import DatabaseError
from reproq.models import TaskStatus
from reproq.ops.observe import StatusSummary, status_summary
from reproq.queries import q
from reproq.runtime.events import EventBroker, finished_event, started_event, task_path_of

if TYPE_CHECKING:
    from reproq.engine.claim import ClaimedRow
    from reproq.engine.completion import Completion

__all__ = [
    "DEFAULT_BUCKETS",
    "DURATION_BUCKETS",
    "WAIT_BUCKETS",
    "DatabaseCollector",
    "DatabaseReader",
    "MetricsSink",
    "NullSink",
    "ProcessedStatus",
    "RuntimeMetrics",
]

logger = logging.getLogger("reproq.metrics")

_T = TypeVar("_T")

DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
"""Histogram buckets (seconds) for task execution time: from no-ops to hour-long jobs."""

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Prometheus' default buckets, which Reproq Worker uses for its database timings."""

WAIT_BUCKETS: tuple[float, ...] = tuple(float(2**i) for i in range(10))
"""Reproq Worker's queue-wait buckets: 1 s doubling up to 512 s."""


class ProcessedStatus(StrEnum):
    """How an attempt ended: the ``outcome`` of ``reproq_task_outcomes_total``.

    Upstream's counters know two of them: ``retry`` and ``cancelled`` count as ``failure``.
    """

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

    Thread-safe (the HTTP server answers on several threads). A query that fails on a
    connection kept from earlier is tried once more on a new connection, so a monitoring
    connection that was closed under it (a restarted server, ``pg_terminate_backend``, an
    idle timeout in a pooler) never reports a healthy database as down. Results are
    cached for ``cache_seconds``.
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
        self._blocked = 0
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
                    self._summary, self._blocked = self._with_connection(self._read_summary)
                    self._summary_error = None
                    self._note_ok()
                except (DatabaseError, psycopg.Error) as exc:
                    self._summary = None
                    self._summary_error = self._failed(exc)
                self._summary_at = time.monotonic()
            return self._summary

    @property
    def blocked(self) -> int:
        """READY tasks held back by a concurrency limit, as of the last :meth:`summary`."""
        return self._blocked

    @property
    def last_error(self) -> str | None:
        """Why the last summary failed (None when it succeeded)."""
        return self._summary_error

    def ping(self) -> str | None:
        """None when the database answers, else the reason (cached like :meth:`summary`)."""
        with self._lock:
            if time.monotonic() - self._ping_at >= self.cache_seconds:
                try:
                    self._with_connection(lambda conn: conn.execute(q("runtime_ping")).fetchone())
                    self._note_ok()
                except (DatabaseError, psycopg.Error) as exc:
                    self._ping_error = self._failed(exc)
                    self._ping_at = time.monotonic()
            return self._ping_error

    def _read_summary(self, conn: Conn) -> tuple[StatusSummary, int]:
        # Finished rows are not exported: cap their counting at one row.
        summary = status_summary(
            conn, stale_after=self.stale_after, window=dt.timedelta(minutes=1), count_cap=1
        )
        row = conn.execute(q("runtime_concurrency_blocked")).fetchone()
        return summary, int(row["blocked"]) if row else 0

    def _with_connection(self, work: Callable[[Conn], _T]) -> _T:
        """*work* on the monitoring connection; once more on a new one if a kept one broke."""
        kept = self._conn is not None and not self._conn.closed
        conn = self._connection()
        try:
            return work(conn)
        except (DatabaseError, psycopg.Error) as exc:
            if not (kept and (conn.broken or conn.closed or _connection_level(exc))):
                raise
            logger.debug("metrics: monitoring connection lost (%s); reconnecting", exc)
            self._drop()
            return work(self._connection())

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


def _connection_level(exc: BaseException) -> bool:
    """A lost connection rather than a statement the server refused."""
    cause = exc.__cause__ if isinstance(exc, DatabaseError) else exc
    return isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


class DatabaseCollector(Collector):
    """Gauges describing the whole queue, read through a :class:`DatabaseReader` on scrape."""

    def __init__(self, reader: DatabaseReader) -> None:
        self.reader = reader

    def collect(self) -> Iterator[Metric]:
        """Yield the gauges; only ``reproq_db_up 0`` when the database cannot be read."""
        summary = self.reader.summary()
        yield _gauge(
            "reproq_db_up",
            "1 when the last read of the queue's database succeeded.",
            0.0 if summary is None else 1.0,
        )
        if summary is None:
            return
        yield from self._upstream(summary)
        yield from self._per_queue(summary)
        yield _gauge(
            "reproq_workers_stale",
            "Registered workers not seen within three heartbeats.",
            summary.workers_stale,
        )

    def _upstream(self, summary: StatusSummary) -> Iterator[Metric]:
        """Reproq Worker's gauges: no labels, totals over every queue."""
        totals = summary.totals
        running = totals.get(TaskStatus.RUNNING, 0)
        alive = [w for w in summary.workers if not w.stale]
        yield _gauge(
            "reproq_queue_depth",
            "Number of queued tasks (READY/WAITING).",
            totals.get(TaskStatus.READY, 0) + totals.get(TaskStatus.WAITING, 0),
        )
        yield _gauge("reproq_tasks_running", "Number of running tasks.", running)
        yield _gauge("reproq_workers", "Number of registered workers seen recently.", len(alive))
        yield _gauge(
            "reproq_concurrency_in_use", "Number of concurrency slots currently in use.", running
        )
        yield _gauge(
            "reproq_concurrency_limit",
            "Total concurrency capacity across workers seen recently.",
            sum(w.concurrency or 0 for w in alive),
        )
        yield _gauge("reproq_queues_paused", "Number of paused queues.", len(summary.paused_queues))
        yield _gauge(
            "reproq_concurrency_blocked_tasks",
            "Number of READY tasks blocked by concurrency limits.",
            self.reader.blocked,
        )

    @staticmethod
    def _per_queue(summary: StatusSummary) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "reproq_queue_depth_by_queue",
            "Tasks waiting to run (READY, including scheduled ones, and WAITING).",
            labels=["queue", "status"],
        )
        running = GaugeMetricFamily(
            "reproq_tasks_running_by_queue", "Tasks RUNNING now.", labels=["queue"]
        )
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
        yield from (depth, running, paused, oldest)


class _ProcessCollector(Collector):
    """Reproq Worker's gauges about the process itself: CPU, memory, connections."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cpu = _cpu_seconds()
        self._at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cpu, at = _cpu_seconds(), time.monotonic()
            elapsed = at - self._at
            percent = 100.0 * (cpu - self._cpu) / elapsed if elapsed > 0 else 0.0
            self._cpu, self._at = cpu, at
        yield _gauge(
            "reproq_worker_cpu_usage_percent",
            "CPU used by this process since the previous scrape, in percent of one core.",
            percent,
        )
        yield _gauge(
            "reproq_worker_mem_usage_bytes",
            "Resident memory of this process in bytes.",
            _resident_bytes(),
        )
        yield _gauge(
            "reproq_db_pool_connections_in_use",
            "Database connections this process holds open.",
            open_connections(),
        )


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _resident_bytes() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return float(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        # Elsewhere only the peak is known (kilobytes on Linux, bytes on macOS).
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return float(peak if os.uname().sysname == "Darwin" else peak * 1024)


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
    one), so several runtimes in one interpreter, as in tests, never collide. With
    *events*, every start and end of an attempt is published there too.
    """

    def __init__(
        self,
        *,
        reader: DatabaseReader | None = None,
        components: Callable[[], Mapping[str, bool]] | None = None,
        events: EventBroker | None = None,
        process_metrics: bool = True,
    ) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.events = events
        self.claimed = Counter(
            "reproq_tasks_claimed_total", "Tasks claimed by this process.", ["queue"],
            registry=registry,
        )  # fmt: skip
        self.processed = Counter(
            "reproq_tasks_processed_total",
            "Task attempts finished by this process (a retry or a cancel is a failure).",
            ["status", "queue"],
            registry=registry,
        )
        self.completed = Counter(
            "reproq_tasks_completed_total",
            "Task attempts recorded by this process (a retry or a cancel is a failure).",
            ["queue", "status"],
            registry=registry,
        )
        self.outcomes = Counter(
            "reproq_task_outcomes_total",
            "Task attempts finished by this process: success, failure, retry or cancelled.",
            ["queue", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "reproq_exec_duration_seconds",
            "Execution time of task attempts finished by this process.",
            ["queue"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.claim_duration = Histogram(
            "reproq_claim_duration_seconds",
            "Time taken by a claim round trip that asked for tasks of the queue.",
            ["queue"],
            buckets=DEFAULT_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "reproq_queue_wait_duration_seconds",
            "Time a task waited in its queue before it started (not observed by reproq).",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.db_duration = Histogram(
            "reproq_db_operation_duration_seconds",
            "Time spent on database round trips: claim, complete, heartbeat, reclaim.",
            ["operation"],
            buckets=DEFAULT_BUCKETS,
            registry=registry,
        )
        self.pool_waits = Counter(
            "reproq_db_pool_wait_count",
            "Times a connection was wanted and none was free (reproq keeps its own: 0).",
            registry=registry,
        )
        registry.register(_ProcessCollector())
        if reader is not None:
            registry.register(DatabaseCollector(reader))
        if components is not None:
            registry.register(_ComponentCollector(components))
        if process_metrics:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        # The task path of each running attempt, kept from its start for its end event.
        self._paths: collections.OrderedDict[int, str] = collections.OrderedDict()
        self._paths_lock = threading.Lock()

    def task_claimed(self, queue: str, count: int = 1) -> None:
        """Count *count* claims from *queue*."""
        if count > 0:
            self.claimed.labels(queue=queue).inc(count)

    def task_started(self, worker_id: str, row: ClaimedRow, task_path: str) -> None:
        """Publish ``task_started`` (when events are on)."""
        if self.events is None:
            return
        with self._paths_lock:
            self._paths[row.result_id] = task_path
            while len(self._paths) > _MAX_TRACKED_PATHS:
                self._paths.popitem(last=False)  # attempts whose end was never recorded
        self.events.publish(started_event(worker_id, row, task_path))

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
        """Count one finished attempt, observe how long it ran, publish its event."""
        upstream = "success" if status == ProcessedStatus.SUCCESS else "failure"
        self.processed.labels(status=upstream, queue=queue).inc()
        self.completed.labels(queue=queue, status=upstream).inc()
        self.outcomes.labels(queue=queue, outcome=str(status)).inc()
        if seconds is not None and seconds >= 0:
            self.duration.labels(queue=queue).observe(seconds)
        if self.events is not None and row is not None and completion is not None:
            with self._paths_lock:
                path = self._paths.pop(row.result_id, None)
            if path is None:
                path = task_path_of(row)  # refused before it started
            self.events.publish(finished_event(worker_id, row, completion, path))

    def db_operation(self, operation: str, seconds: float, queues: Sequence[str] = ()) -> None:
        """Observe one round trip (and, for a claim, its time per queue asked)."""
        self.db_duration.labels(operation=operation).observe(seconds)
        for queue in queues:
            self.claim_duration.labels(queue=queue).observe(seconds)


_MAX_TRACKED_PATHS = 10_000
