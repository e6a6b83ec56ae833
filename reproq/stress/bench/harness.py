"""What every bench scenario shares: fresh databases, worker processes, and the drain.

A scenario gets a :class:`Harness`; it creates a migrated database per run, starts real
``reproq worker`` processes through :class:`~reproq.stress.fleet.Fleet`, watches the
database until the tasks it is waiting for are finished, and reads the figures back from
the database's own clock (``started_at``, ``finished_at``), not the bench's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from reproq.db import Conn, connect, translate_errors
from reproq.errors import DatabaseError
from reproq.pg.migrations import migrate
from reproq.pg.throwaway import create_database, drop_database, dsn_with_dbname
from reproq.producer.client import Client
from reproq.producer.signature import Signature
from reproq.queries import q
from reproq.stress.bench.config import NOOP, BenchConfig
from reproq.stress.fleet import Fleet, WorkerSettings
from reproq.stress.report import Progress

__all__ = ["APPLICATION_NAME", "Harness", "latency_ms", "worker_rss_mb"]

APPLICATION_NAME = "reproq-stress-bench"
"""The bench's own connections (the stress harness's prefix: faults spare them)."""

_ENQUEUE_CHUNK = 50_000


def latency_ms(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``stress_bench_pickup`` row (seconds) as milliseconds."""

    def ms(value: Any) -> float | None:
        return round(float(value) * 1000, 3) if value is not None else None

    return {
        "n": int(row["n"]),
        "p50": ms(row["p50"]),
        "p95": ms(row["p95"]),
        "p99": ms(row["p99"]),
        "max": ms(row["max"]),
    }


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (the process executor's children)."""
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for member in members:
        with contextlib.suppress(psutil.Error):
            total += member.memory_info().rss
    return total


def worker_rss_mb(fleet: Fleet) -> float | None:
    """The largest resident size among the fleet's live workers, children included, in MB."""
    fleet.reap()
    sizes = [_tree_rss(r.pid) for r in fleet.records if r.role == "worker" and r.ended_at is None]
    sizes = [s for s in sizes if s > 0]
    return round(max(sizes) / 1024 / 1024, 1) if sizes else None


class Harness:
    """A bench run's server, settings, progress line and worker logs."""

    def __init__(self, config: BenchConfig, admin_dsn: str, progress: Progress) -> None:
        self.config = config
        self.admin_dsn = admin_dsn
        self.progress = progress
        self.log_root = Path(tempfile.mkdtemp(prefix="reproq-bench-"))
        self.failures = 0
        """Runs that ended in an error (their worker logs are kept)."""

    # ------------------------------------------------------------------ databases

    @contextlib.contextmanager
    def database(self, *, migrated: bool = True) -> Iterator[str]:
        """A fresh database for one run (with reproq's schema unless told otherwise)."""
        name = f"reproq_bench_{uuid.uuid4().hex[:10]}"
        create_database(self.admin_dsn, name)
        try:
            dsn = dsn_with_dbname(self.admin_dsn, name)
            if migrated:
                migrate(dsn)
            yield dsn
        finally:
            try:
                drop_database(self.admin_dsn, name)
            except DatabaseError as exc:
                self.progress.note(f"could not drop {name}: {exc}")

    def connect(self, dsn: str) -> Conn:
        """An autocommit connection of the bench's own."""
        return connect(dsn, application_name=APPLICATION_NAME)

    def one(self, dsn: str, sql: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The one row of a query (``q(name)``), on a short-lived connection."""
        with self.connect(dsn) as conn, translate_errors():
            row = conn.execute(sql, params).fetchone()
        if row is None:
            raise DatabaseError(f"no row from: {sql.splitlines()[0]}")
        return row

    def max_id(self, dsn: str) -> int:
        """The highest result_id so far: a run's rows are the ones above it."""
        return int(self.one(dsn, q("stress_max_result_id"))["result_id"])

    def analyze(self, dsn: str) -> None:
        """Refresh task_runs' planner statistics."""
        with self.connect(dsn) as conn, translate_errors():
            conn.execute(q("stress_bench_analyze"))

    def empty_queue(self, dsn: str) -> None:
        """Make task_runs an empty queue as a long-idle deployment has it: analyzed while
        empty, and (unless ``config.autovacuum``) not analyzed again during the run."""
        with self.connect(dsn) as conn, translate_errors():
            conn.execute(q("stress_bench_analyze"))
            if not self.config.autovacuum:
                conn.execute(q("stress_bench_autovacuum_off"))

    def autoanalyzed_after(self, dsn: str, since: dt.datetime) -> float | None:
        """Seconds after ``since`` (the database's clock) at which autovacuum last analyzed
        task_runs, or ``None`` when it did not since then."""
        last = self.one(dsn, q("stress_bench_last_autoanalyze"))["last"]
        return round((last - since).total_seconds(), 3) if last and last > since else None

    def enqueue_noops(self, dsn: str, count: int, tag: str) -> float:
        """Bulk-enqueue ``count`` unique no-op tasks; returns seconds taken.

        Statistics are refreshed afterwards, as autovacuum eventually would: these
        scenarios measure a queue whose plans fit its rows (``e2e-burst`` measures the
        other case).
        """
        sigs = [Signature(task_path=NOOP, args=(tag, i)) for i in range(count)]
        began = time.perf_counter()
        with Client(dsn) as client:
            for start in range(0, count, _ENQUEUE_CHUNK):
                client.enqueue_many(sigs[start : start + _ENQUEUE_CHUNK])
        seconds = time.perf_counter() - began
        self.analyze(dsn)
        return seconds

    # ------------------------------------------------------------------ workers

    def worker_settings(
        self,
        *,
        executor: str = "thread",
        concurrency: int,
        connections: int = 1,
        extra_args: Sequence[str] = (),
        user_defaults: bool = False,
    ) -> WorkerSettings:
        """How the bench starts ``reproq worker``.

        With ``user_defaults`` the lease, heartbeat and reclaim intervals are the worker's
        own defaults, as a user starting ``reproq worker`` gets them.
        """
        intervals = (300.0, 60.0, 60.0) if user_defaults else (60.0, 10.0, 30.0)
        return WorkerSettings(
            concurrency=concurrency,
            executor=executor,
            allowed_task_modules=NOOP.rsplit(".", 1)[0] + ".",
            lease_seconds=intervals[0],
            heartbeat_seconds=intervals[1],
            reclaim_interval_seconds=intervals[2],
            shutdown_timeout=10,
            extra_args=(
                *(("--connections", str(connections)) if connections > 1 else ()),
                *extra_args,
                *self.config.worker_args,
            ),
        )

    @contextlib.contextmanager
    def workers(
        self, dsn: str, *, label: str, settings: WorkerSettings, count: int = 1
    ) -> Iterator[Fleet]:
        """``count`` running worker processes, stopped (SIGTERM) when the block ends."""
        fleet = Fleet(
            dsn=dsn,
            workers=count,
            settings=settings,
            log_dir=self.log_root / label.replace(" ", "-"),
            id_prefix="bench",
        )
        try:
            fleet.start()
            yield fleet
        finally:
            fleet.shutdown()
            self.progress.done()

    def wait_registered(self, dsn: str, fleet: Fleet, *, idle: float) -> None:
        """Wait until every worker is in the registry, then ``idle`` seconds more: the
        worker has opened its connections and claimed from the empty queue by then."""
        ids = [fleet.worker_id(slot) for slot in range(fleet.workers)]
        deadline = time.monotonic() + self.config.timeout
        with self.connect(dsn) as conn, translate_errors():
            while time.monotonic() < deadline:
                row = conn.execute(q("stress_bench_registered"), {"ids": ids}).fetchone()
                if row is not None and int(row["n"]) >= len(ids):
                    time.sleep(idle)
                    return
                if fleet.alive() == 0:
                    raise DatabaseError(f"every worker exited; logs in {fleet.log_dir}")
                time.sleep(0.1)
        raise DatabaseError(f"the workers did not register within {self.config.timeout:g}s")

    def wait_finished(
        self,
        dsn: str,
        *,
        label: str,
        first_id: int,
        count: int,
        fleet: Fleet | None = None,
        poll: float = 0.25,
    ) -> float:
        """Wait until ``count`` tasks above ``first_id`` are finished; returns the seconds.

        One connection, polled four times a second by default: the watcher shares the
        machine with the workers and the server, and a new connection per look costs a
        backend start. Raises when the time is up or (given ``fleet``) every worker died.
        """
        began = time.perf_counter()
        deadline = time.monotonic() + self.config.timeout
        finished = 0
        already: int | None = None  # finished before the wait began
        with self.connect(dsn) as conn, translate_errors():
            while time.monotonic() < deadline:
                row = conn.execute(q("stress_bench_done_count"), {"first_id": first_id}).fetchone()
                finished = int(row["n"]) if row else 0
                already = finished if already is None else already
                elapsed = time.perf_counter() - began
                if fleet is not None:
                    self.progress.update(
                        {
                            label: f"{finished:,}/{count:,}",
                            "elapsed": f"{elapsed:.1f}s",
                            "rate/s": (finished - already) / elapsed if elapsed else 0.0,
                        }
                    )
                if finished >= count:
                    return elapsed
                if fleet is not None and fleet.alive() == 0:
                    raise DatabaseError(f"{label}: every worker exited; logs in {fleet.log_dir}")
                time.sleep(poll)
        raise DatabaseError(
            f"{label}: only {finished:,}/{count:,} finished within {self.config.timeout:g}s"
        )

    def drained(self, dsn: str, *, first_id: int, count: int) -> dict[str, Any]:
        """Figures of a finished drain, from the database's clock: tasks per second from the
        first claim to the last finish."""
        counts = self.one(dsn, q("stress_bench_counts"), {"first_id": first_id})
        pickup = self.one(dsn, q("stress_bench_pickup"), {"first_id": first_id})
        busy = (counts["last_finished"] - counts["first_started"]).total_seconds()
        return {
            "tasks": count,
            "successful": int(counts["done"]),
            "failed": int(counts["failed"]),
            "seconds": round(busy, 4),
            "tasks_per_second": round(count / busy, 1) if busy > 0 else None,
            # Enqueued -> started in a bulk run: backlog and worker start-up, not pickup.
            "wait_ms": latency_ms(pickup),
        }

    def drain(
        self,
        dsn: str,
        *,
        label: str,
        workers: int,
        settings: WorkerSettings,
        count: int,
        first_id: int,
    ) -> dict[str, Any]:
        """Start ``workers`` processes on a backlog, wait until ``count`` tasks finished,
        note the workers' memory, stop them; the drain's figures."""
        with self.workers(dsn, label=label, settings=settings, count=workers) as fleet:
            wall = self.wait_finished(dsn, label=label, first_id=first_id, count=count, fleet=fleet)
            rss = worker_rss_mb(fleet)
        return {
            "workers": workers,
            "executor": settings.executor,
            "concurrency": settings.concurrency,
            **self.drained(dsn, first_id=first_id, count=count),
            "wall_seconds": round(wall, 3),
            "worker_rss_mb": rss,
        }
