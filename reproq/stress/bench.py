"""``reproq bench``: throughput and latency scenarios against a durable PostgreSQL.

Scenarios (each in a fresh database of its own, dropped afterwards):

* ``enqueue`` — bulk enqueue rate: N specs through :meth:`Client.enqueue_many` with the
  unique active-spec index in place.
* ``e2e`` — end-to-end no-op throughput: bulk-enqueue N no-op tasks, then run 1 and
  then several real ``reproq worker`` processes (thread executor) until every task is
  SUCCESSFUL; then one worker per other executor (mock, process, subprocess, the latter
  with fewer tasks since it starts an interpreter per task).
* ``latency`` — pickup latency (``started_at - enqueued_at``) p50/p95/p99 at a light,
  fixed enqueue rate, with LISTEN/NOTIFY wake-ups and with polling only.
* ``claim-growth`` — drain rate of one worker with 10k and with 1M finished rows
  already in ``task_runs``: claim cost must not grow with history.

The server is a throwaway one with durable settings (``synchronous_commit=on``,
``fsync=on``), or the server of ``--dsn`` (its settings are reported as found). Every
result document names the machine, the PostgreSQL version and the settings that matter.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import reproq
from reproq.db import Conn, connect, translate_errors
from reproq.errors import DatabaseError, ReproqError, UsageError
from reproq.pg.migrations import migrate
from reproq.pg.throwaway import (
    create_database,
    drop_database,
    dsn_with_dbname,
    throwaway_server,
)
from reproq.producer.client import Client
from reproq.producer.signature import Signature
from reproq.queries import q
from reproq.stress.fleet import Fleet, WorkerSettings
from reproq.stress.report import Progress

__all__ = [
    "BENCH_SETTINGS",
    "SCENARIOS",
    "BenchConfig",
    "machine_info",
    "render_bench",
    "run_bench",
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
)
"""Server settings every result document records."""

NOOP = "reproq.stress.tasks.noop"
"""The no-op task the scenarios run."""

SCENARIOS: tuple[str, ...] = ("enqueue", "e2e", "latency", "claim-growth")

LATENCY_MODES: tuple[tuple[str, str | None], ...] = (
    ("notify", None),
    ("polling", None),
    ("polling-10ms", "10ms"),
)
"""Latency runs: (name, --poll-interval); every mode but ``notify`` has no insert NOTIFY."""
"""Scenario names, in the order they run."""

_HISTORY_CHUNK = 100_000


@dataclass(frozen=True, kw_only=True, slots=True)
class BenchConfig:
    """What to run and how big."""

    scenarios: tuple[str, ...] = SCENARIOS
    dsn: str | None = None
    """Any database on the server to use; scenarios create databases of their own there."""
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
    latency_rate: float = 20.0
    latency_seconds: float = 10.0
    growth_history: tuple[int, ...] = (10_000, 1_000_000)
    growth_count: int = 20_000
    worker_args: tuple[str, ...] = ()
    """Extra ``reproq worker`` flags for every worker the bench starts."""
    timeout: float = 600.0
    """Give up on one run after this many seconds."""

    def scaled(self, factor: float) -> BenchConfig:
        """Every count multiplied by ``factor`` (at least 1), for quick or smoke runs."""

        def n(value: int) -> int:
            return max(1, round(value * factor))

        return BenchConfig(
            scenarios=self.scenarios,
            dsn=self.dsn,
            enqueue_count=n(self.enqueue_count),
            e2e_count=n(self.e2e_count),
            e2e_workers=self.e2e_workers,
            e2e_concurrency=self.e2e_concurrency,
            e2e_wide_concurrency=self.e2e_wide_concurrency,
            e2e_connections=self.e2e_connections,
            executors=self.executors,
            process_count=n(self.process_count),
            subprocess_count=n(self.subprocess_count),
            latency_rate=self.latency_rate,
            latency_seconds=max(1.0, self.latency_seconds * min(1.0, factor * 10)),
            growth_history=tuple(n(h) for h in self.growth_history),
            growth_count=n(self.growth_count),
            worker_args=self.worker_args,
            timeout=self.timeout,
        )


def machine_info() -> dict[str, Any]:
    """CPU, memory, OS and Python of this machine."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gb: float | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model or platform.processor() or platform.machine(),
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "reproq": reproq.__version__,
    }


def _server_facts(conn: Conn) -> dict[str, Any]:
    with translate_errors():
        info = conn.execute(q("stress_server_info")).fetchone() or {}
        settings = {
            str(r["name"]): str(r["setting"])
            for r in conn.execute(q("stress_server_settings"), {"names": list(REPORTED_SETTINGS)})
        }
    return {
        "version": info.get("version"),
        "server_version": info.get("server_version"),
        "settings": settings,
    }


class _Bench:
    def __init__(
        self, config: BenchConfig, admin_dsn: str, server_kind: str, progress: Progress
    ) -> None:
        self.config = config
        self.admin_dsn = admin_dsn
        self.server_kind = server_kind
        self.progress = progress
        self.log_root = Path(tempfile.mkdtemp(prefix="reproq-bench-"))
        self.failures = 0
        """Runs that ended in an error (their worker logs are kept)."""

    # ------------------------------------------------------------------ helpers

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A fresh migrated database for one run."""
        name = f"reproq_bench_{uuid.uuid4().hex[:10]}"
        create_database(self.admin_dsn, name)
        try:
            dsn = dsn_with_dbname(self.admin_dsn, name)
            migrate(dsn)
            yield dsn
        finally:
            try:
                drop_database(self.admin_dsn, name)
            except DatabaseError as exc:
                self.progress.note(f"could not drop {name}: {exc}")

    def _max_id(self, dsn: str) -> int:
        with connect(dsn, application_name="reproq-stress-bench") as conn, translate_errors():
            row = conn.execute(q("stress_max_result_id")).fetchone()
        return int(row["result_id"]) if row else 0

    def _enqueue_noops(self, dsn: str, count: int, tag: str) -> float:
        """Bulk-enqueue ``count`` unique no-op tasks; returns seconds taken.

        Statistics are refreshed afterwards, as autovacuum eventually would: a plan made
        from statistics taken while no row was READY is not what a queue runs on for long.
        """
        sigs = [Signature(task_path=NOOP, args=(tag, i)) for i in range(count)]
        began = time.perf_counter()
        with Client(dsn) as client:
            for start in range(0, count, 50_000):
                client.enqueue_many(sigs[start : start + 50_000])
        seconds = time.perf_counter() - began
        with connect(dsn, application_name="reproq-stress-bench") as conn, translate_errors():
            conn.execute(q("stress_bench_analyze"))
        return seconds

    def _drain(
        self,
        dsn: str,
        *,
        label: str,
        workers: int,
        executor: str,
        count: int,
        first_id: int,
        concurrency: int | None = None,
        connections: int = 1,
        extra_args: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Start ``workers`` processes, wait until ``count`` tasks finished, stop them."""
        settings = WorkerSettings(
            concurrency=concurrency or self.config.e2e_concurrency,
            executor=executor,
            allowed_task_modules=NOOP.rsplit(".", 1)[0] + ".",
            lease_seconds=60,
            heartbeat_seconds=10,
            reclaim_interval_seconds=30,
            shutdown_timeout=10,
            extra_args=(
                *(("--connections", str(connections)) if connections > 1 else ()),
                # reproq's own side of the contract (the default module is reproq-django's).
                *(("--executor-module", "reproq.executor") if executor == "subprocess" else ()),
                *extra_args,
                *self.config.worker_args,
            ),
        )
        log_dir = self.log_root / label.replace(" ", "-")
        fleet = Fleet(
            dsn=dsn, workers=workers, settings=settings, log_dir=log_dir, id_prefix="bench"
        )
        # One connection, polled four times a second: the watcher shares the machine with
        # the workers and the server, and a new connection per look costs a backend start.
        monitor = connect(dsn, application_name="reproq-stress-bench")
        began = time.perf_counter()
        finished = 0
        try:
            fleet.start()
            deadline = time.monotonic() + self.config.timeout
            while time.monotonic() < deadline:
                row = monitor.execute(
                    q("stress_bench_done_count"), {"first_id": first_id}
                ).fetchone()
                finished = int(row["n"]) if row else 0
                elapsed = time.perf_counter() - began
                self.progress.update(
                    {
                        label: f"{finished:,}/{count:,}",
                        "elapsed": f"{elapsed:.1f}s",
                        "rate/s": finished / elapsed if elapsed else 0.0,
                    }
                )
                if finished >= count:
                    break
                if fleet.alive() == 0:
                    raise DatabaseError(f"{label}: every worker exited; logs in {log_dir}")
                time.sleep(0.25)
            wall = time.perf_counter() - began
        finally:
            monitor.close()
            fleet.shutdown()
            self.progress.done()
        if finished < count:
            raise DatabaseError(f"{label}: only {finished}/{count} finished in time")
        with connect(dsn, application_name="reproq-stress-bench") as conn, translate_errors():
            counts = conn.execute(q("stress_bench_counts"), {"first_id": first_id}).fetchone()
            pickup = conn.execute(q("stress_bench_pickup"), {"first_id": first_id}).fetchone()
        assert counts is not None and pickup is not None
        busy = (counts["last_finished"] - counts["first_started"]).total_seconds()
        return {
            "workers": workers,
            "executor": executor,
            "concurrency": settings.concurrency,
            "connections": connections,
            "tasks": count,
            "successful": int(counts["done"]),
            "failed": int(counts["failed"]),
            "seconds": round(busy, 4),
            "wall_seconds": round(wall, 3),
            "tasks_per_second": round(count / busy, 1) if busy > 0 else None,
            # Enqueued -> started in a bulk run: backlog and worker start-up, not pickup.
            "wait_ms": _latency_ms(pickup),
        }

    # ------------------------------------------------------------------ scenarios

    def enqueue(self) -> dict[str, Any]:
        """Bulk enqueue rate."""
        n = self.config.enqueue_count
        self.progress.note(f"enqueue: {n:,} specs through Client.enqueue_many…")
        with self.database() as dsn:
            sigs = [Signature(task_path=NOOP, args=("enqueue", i)) for i in range(n)]
            began = time.perf_counter()
            now = dt.datetime.now(dt.UTC)
            for sig in sigs:
                sig.to_new_task(now=now)
            prepare = time.perf_counter() - began
            with Client(dsn) as client:
                client.enqueue_many(sigs[:1])  # open the pool outside the timing
                began = time.perf_counter()
                ids = client.enqueue_many(sigs[1:])
                seconds = time.perf_counter() - began
            total = len(ids)
        rate = total / seconds if seconds > 0 else None
        self.progress.note(f"enqueue: {total:,} specs in {seconds:.2f}s = {rate or 0:,.0f}/s")
        return {
            "specs": total,
            "seconds": round(seconds, 4),
            "specs_per_second": round(rate, 1) if rate else None,
            "spec_build_seconds": round(prepare, 4),
            "target_specs_per_second": 30_000,
        }

    def e2e(self) -> dict[str, Any]:
        """End-to-end no-op throughput for 1 and N workers and each executor."""
        cfg = self.config
        many = cfg.e2e_workers or max(2, os.cpu_count() or 2)
        runs: list[dict[str, Any]] = []
        # With 100 slots, one claim fills them all and the next waits for that batch to
        # end; the wide run has slots to spare (claims take at most 200), so claiming
        # overlaps execution. The lanes run gives one worker process that many slots per
        # connection, so the server works on several round trips at once.
        wide = cfg.e2e_wide_concurrency
        lanes = cfg.e2e_connections
        plan: list[tuple[str, int, str, int, int, int]] = [
            ("thread x1", 1, "thread", cfg.e2e_count, cfg.e2e_concurrency, 1),
            (f"thread x1 {wide} slots", 1, "thread", cfg.e2e_count * 2, wide, 1),
            (
                f"thread x1 {wide * lanes} slots {lanes} connections",
                1,
                "thread",
                cfg.e2e_count * 2 * lanes,
                wide * lanes,
                lanes,
            ),
            (f"thread x{many}", many, "thread", cfg.e2e_count, cfg.e2e_concurrency, 1),
        ]
        counts = {
            "mock": cfg.e2e_count,
            "process": cfg.process_count,
            "subprocess": cfg.subprocess_count,
        }
        plan += [
            (f"{ex} x1", 1, ex, counts.get(ex, cfg.process_count), cfg.e2e_concurrency, 1)
            for ex in cfg.executors
        ]
        for label, workers, executor, count, slots, connections in plan:
            with self.database() as dsn:
                first_id = self._max_id(dsn)
                self.progress.note(f"e2e {label}: enqueueing {count:,} no-op tasks…")
                self._enqueue_noops(dsn, count, label)
                try:
                    result = self._drain(
                        dsn,
                        label=f"e2e {label}",
                        workers=workers,
                        executor=executor,
                        count=count,
                        first_id=first_id,
                        concurrency=_concurrency_for(executor, slots),
                        connections=connections,
                    )
                except ReproqError as exc:
                    self.failures += 1
                    result = {"workers": workers, "executor": executor, "error": str(exc)}
                self.progress.note(f"e2e {label}: {_rate(result)}")
                runs.append({"label": label, **result})
        return {"runs": runs, "target_tasks_per_second_one_worker": 15_000}

    def latency(self) -> dict[str, Any]:
        """Pickup latency at a light fixed rate, with NOTIFY and with polling only."""
        cfg = self.config
        out: dict[str, Any] = {
            "rate_per_second": cfg.latency_rate,
            "seconds": cfg.latency_seconds,
        }
        for mode, poll in LATENCY_MODES:
            with self.database() as dsn:
                if mode != "notify":
                    with connect(dsn, application_name="reproq-stress-bench") as conn:
                        conn.execute(q("stress_bench_disable_notify"))
                first_id = self._max_id(dsn)
                args = ("--poll-interval", poll) if poll else ()
                out[mode] = {
                    "poll_interval": poll or "worker default",
                    **self._latency_run(dsn, mode, first_id, args),
                }
            self.progress.note(f"latency {mode}: {_fmt_latency(out[mode])}")
        out["target_ms"] = {"p50": 5, "p99": 20}
        return out

    def _latency_run(
        self, dsn: str, mode: str, first_id: int, args: Sequence[str]
    ) -> dict[str, Any]:
        cfg = self.config
        settings = WorkerSettings(
            concurrency=10,
            executor="thread",
            allowed_task_modules=NOOP.rsplit(".", 1)[0] + ".",
            lease_seconds=60,
            heartbeat_seconds=10,
            reclaim_interval_seconds=30,
            shutdown_timeout=10,
            extra_args=(*args, *self.config.worker_args),
        )
        fleet = Fleet(
            dsn=dsn,
            workers=1,
            settings=settings,
            log_dir=self.log_root / f"latency-{mode}",
            id_prefix="bench",
        )
        fleet.start()
        total = max(1, round(cfg.latency_rate * cfg.latency_seconds))
        try:
            with Client(dsn) as client:
                # Wait for the worker to be up and listening before the measured part.
                client.enqueue(NOOP, ("warmup", mode))
                self._wait_done(dsn, first_id, 1, f"latency {mode} warm-up")
                measured_from = self._max_id(dsn)
                interval = 1.0 / cfg.latency_rate
                began = time.monotonic()
                for i in range(total):
                    target = began + i * interval
                    pause = target - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    client.enqueue(NOOP, (mode, i))
                    if i % max(1, int(cfg.latency_rate)) == 0:
                        self.progress.update({f"latency {mode}": f"{i:,}/{total:,}"})
            self._wait_done(dsn, measured_from, total, f"latency {mode}")
        finally:
            fleet.shutdown()
            self.progress.done()
        with connect(dsn, application_name="reproq-stress-bench") as conn, translate_errors():
            pickup = conn.execute(q("stress_bench_pickup"), {"first_id": measured_from}).fetchone()
        assert pickup is not None
        return {"tasks": total, "pickup_ms": _latency_ms(pickup)}

    def _wait_done(self, dsn: str, first_id: int, count: int, label: str) -> None:
        deadline = time.monotonic() + self.config.timeout
        with connect(dsn, application_name="reproq-stress-bench") as conn:
            while time.monotonic() < deadline:
                row = conn.execute(q("stress_bench_done_count"), {"first_id": first_id}).fetchone()
                if row is not None and int(row["n"]) >= count:
                    return
                time.sleep(0.05)
        raise DatabaseError(f"{label}: tasks did not finish within {self.config.timeout:g}s")

    def claim_growth(self) -> dict[str, Any]:
        """Drain rate with little and with much finished history in the table."""
        cfg = self.config
        runs: list[dict[str, Any]] = []
        for history in cfg.growth_history:
            with self.database() as dsn:
                self.progress.note(f"claim-growth: inserting {history:,} finished rows…")
                began = time.perf_counter()
                with (
                    connect(dsn, application_name="reproq-stress-bench") as conn,
                    translate_errors(),
                ):
                    for start in range(1, history + 1, _HISTORY_CHUNK):
                        stop = min(history, start + _HISTORY_CHUNK - 1)
                        conn.execute(
                            q("stress_bench_insert_finished"), {"start": start, "stop": stop}
                        )
                        self.progress.update({"history rows": f"{stop:,}/{history:,}"})
                    size = conn.execute(q("stress_bench_table_size")).fetchone()
                self.progress.done()
                insert_seconds = time.perf_counter() - began
                first_id = self._max_id(dsn)
                self._enqueue_noops(dsn, cfg.growth_count, f"growth-{history}")
                try:
                    result = self._drain(
                        dsn,
                        label=f"claim-growth {history:,}",
                        workers=1,
                        executor="thread",
                        count=cfg.growth_count,
                        first_id=first_id,
                    )
                except ReproqError as exc:
                    self.failures += 1
                    result = {"error": str(exc)}
                result.update(
                    {
                        "history_rows": history,
                        "history_insert_seconds": round(insert_seconds, 2),
                        "table_bytes": int(size["bytes"]) if size else None,
                    }
                )
                self.progress.note(f"claim-growth {history:,} finished rows: {_rate(result)}")
                runs.append(result)
        return {"runs": runs}


def _concurrency_for(executor: str, concurrency: int) -> int:
    """Slots per worker: one child process per slot is only worth it up to a few per CPU."""
    if executor == "process":
        return min(concurrency, 2 * (os.cpu_count() or 1))
    if executor == "subprocess":
        return min(concurrency, 8)
    return concurrency


def _latency_ms(row: Mapping[str, Any]) -> dict[str, Any]:
    def ms(value: Any) -> float | None:
        return round(float(value) * 1000, 3) if value is not None else None

    return {
        "n": int(row["n"]),
        "p50": ms(row["p50"]),
        "p95": ms(row["p95"]),
        "p99": ms(row["p99"]),
        "max": ms(row["max"]),
    }


def _fmt_latency(result: Mapping[str, Any]) -> str:
    p = result.get("pickup_ms") or {}
    return f"p50 {p.get('p50')} ms, p95 {p.get('p95')} ms, p99 {p.get('p99')} ms (n={p.get('n')})"


def _rate(result: Mapping[str, Any]) -> str:
    if "error" in result:
        return f"error: {result['error']}"
    return (
        f"{result.get('tasks_per_second') or 0:,.0f} tasks/s "
        f"({result.get('tasks'):,} in {result.get('seconds')}s)"
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class _Server:
    admin_dsn: str
    kind: str


@contextlib.contextmanager
def _server(config: BenchConfig, progress: Progress) -> Iterator[_Server]:
    if config.dsn:
        yield _Server(admin_dsn=config.dsn, kind="external")
        return
    progress.note("starting a throwaway PostgreSQL server (durable settings)…")
    with throwaway_server(settings=BENCH_SETTINGS, require_local=True) as info:
        yield _Server(admin_dsn=info.dsn, kind=str(info.kind))


@dataclass(kw_only=True, slots=True)
class _Document:
    started_at: str
    machine: dict[str, Any]
    postgres: dict[str, Any] = field(default_factory=dict)
    scenarios: dict[str, Any] = field(default_factory=dict)


def run_bench(config: BenchConfig, *, progress: Progress | None = None) -> dict[str, Any]:
    """Run the chosen scenarios; returns the JSON-ready result document."""
    unknown = [s for s in config.scenarios if s not in SCENARIOS]
    if unknown:
        raise UsageError(f"unknown bench scenario {unknown[0]!r} (known: {', '.join(SCENARIOS)})")
    progress = progress or Progress()
    doc = _Document(
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        machine=machine_info(),
    )
    with _server(config, progress) as server:
        with connect(server.admin_dsn, application_name="reproq-stress-bench") as conn:
            doc.postgres = {"kind": server.kind, **_server_facts(conn)}
        bench = _Bench(config, server.admin_dsn, server.kind, progress)
        actions: dict[str, Callable[[], dict[str, Any]]] = {
            "enqueue": bench.enqueue,
            "e2e": bench.e2e,
            "latency": bench.latency,
            "claim-growth": bench.claim_growth,
        }
        completed = False
        try:
            for name in SCENARIOS:
                if name in config.scenarios:
                    began = time.perf_counter()
                    result = actions[name]()
                    result["scenario_seconds"] = round(time.perf_counter() - began, 2)
                    doc.scenarios[name] = result
            completed = True
        finally:
            if completed and not bench.failures:
                shutil.rmtree(bench.log_root, ignore_errors=True)
            else:
                progress.note(f"worker logs kept in {bench.log_root}")
    return {
        "started_at": doc.started_at,
        "machine": doc.machine,
        "postgres": doc.postgres,
        "scenarios": doc.scenarios,
        "argv": sys.argv[1:],
    }


def render_bench(document: Mapping[str, Any]) -> str:
    """A human summary of a result document."""
    machine = document.get("machine", {})
    pg = document.get("postgres", {})
    settings = pg.get("settings", {})
    lines = [
        f"machine: {machine.get('cpu_count')} CPUs ({machine.get('cpu_model')}), "
        f"{machine.get('memory_gb')} GB, {machine.get('platform')}, Python {machine.get('python')}",
        f"postgres: {pg.get('server_version')} ({pg.get('kind')}); "
        + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())),
    ]
    scenarios = document.get("scenarios", {})
    if "enqueue" in scenarios:
        e = scenarios["enqueue"]
        lines.append(
            f"enqueue: {e.get('specs'):,} specs in {e.get('seconds')}s = "
            f"{e.get('specs_per_second') or 0:,.0f} specs/s (target 30,000)"
        )
    for name in ("e2e", "claim-growth"):
        for entry in scenarios.get(name, {}).get("runs", []):
            label = entry.get("label") or f"{entry.get('history_rows', 0):,} finished rows"
            lines.append(f"{name} {label}: {_rate(entry)}")
    if "latency" in scenarios:
        lat = scenarios["latency"]
        for mode, _ in LATENCY_MODES:
            if mode in lat:
                lines.append(
                    f"latency {mode} @ {lat.get('rate_per_second')}/s: {_fmt_latency(lat[mode])}"
                )
    return "\n".join(lines)
