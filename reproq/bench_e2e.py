"""End-to-end worker benchmark: one ``reproq worker`` process, real PostgreSQL, JSON out.

Two scenarios, both with the ``thread`` executor and :func:`reproq.demo.noop`:

- **throughput**: bulk-enqueue ``--tasks`` runs, start one worker process, wait until all
  are SUCCESSFUL; jobs/s is measured from the database (first ``started_at`` to last
  ``finished_at``), so interpreter start-up is not counted;
- **latency** (light load): with the worker idle, enqueue one run every
  ``--light-interval`` seconds; pickup latency is ``started_at - enqueued_at``, i.e. the
  NOTIFY wake-up path.

The server is ``--dsn`` if given, else a throwaway cluster with ``synchronous_commit=on``
(:func:`reproq.pgserver.throwaway_server`); each run uses a fresh, migrated database::

    python -m reproq.bench_e2e --tasks 20000 --concurrency 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reproq.client import Client
from reproq.db import connect
from reproq.migrations import migrate
from reproq.pgserver import create_database, drop_database, dsn_with_dbname, throwaway_server
from reproq.queries import q
from reproq.task import Signature

__all__ = ["BENCH_SETTINGS", "main", "run_bench"]

BENCH_SETTINGS = {
    # Durable commits, as in production: every claim and every flush waits for the WAL.
    "synchronous_commit": "on",
    "fsync": "on",
    "max_connections": "100",
    "shared_buffers": "256MB",
}
"""Server settings of the throwaway cluster the benchmark starts."""

_TASK = "reproq.demo.noop"


@contextmanager
def _database(dsn: str | None) -> Iterator[str]:
    """A fresh migrated database on ``dsn``'s server or on a throwaway cluster."""
    with _server(dsn) as admin_dsn:
        name = f"reproq_bench_{uuid.uuid4().hex[:10]}"
        create_database(admin_dsn, name)
        try:
            db = dsn_with_dbname(admin_dsn, name)
            migrate(db)
            yield db
        finally:
            drop_database(admin_dsn, name)


@contextmanager
def _server(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    with throwaway_server(settings=BENCH_SETTINGS, require_local=True) as info:
        yield info.dsn


def _start_worker(dsn: str, concurrency: int, extra: Sequence[str]) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "reproq",
        "worker",
        "--dsn",
        dsn,
        "--concurrency",
        str(concurrency),
        "--allowed-task-modules",
        "reproq.demo.",
        "--executor",
        "thread",
        "--worker-id",
        f"bench-{os.getpid()}",
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop_worker(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err.decode(errors="replace")


def _wait_ready(dsn: str, worker_id: str, timeout: float = 30.0) -> None:
    conn = connect(dsn)
    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            row = conn.execute(q("bench_e2e_registered"), {"worker_id": worker_id}).fetchone()
            if row:
                time.sleep(0.3)  # the listener connects right after registration
                return
            time.sleep(0.05)
    finally:
        conn.close()
    raise RuntimeError("the worker did not register in time")


def _percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def _latencies(conn: Any, run: str) -> list[float]:
    rows = conn.execute(q("bench_e2e_pickup_ms"), {"run": run}).fetchall()
    return [float(r["ms"]) for r in rows]


def _throughput(dsn: str, tasks: int, concurrency: int, extra: Sequence[str]) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    with Client(dsn) as client:
        t0 = time.perf_counter()
        for start in range(0, tasks, 5000):
            client.enqueue_many(
                [
                    Signature(task_path=_TASK, kwargs={"run": run, "i": i})
                    for i in range(start, min(tasks, start + 5000))
                ]
            )
        enqueue_seconds = time.perf_counter() - t0
    conn = connect(dsn)
    conn.execute(q("bench_e2e_vacuum"))
    wall0 = time.perf_counter()
    proc = _start_worker(dsn, concurrency, extra)
    try:
        deadline = time.monotonic() + max(120.0, tasks / 500)
        done = 0
        while time.monotonic() < deadline:
            row = conn.execute(q("bench_e2e_successful"), {"run": run}).fetchone()
            done = int(row["n"]) if row else 0
            if done >= tasks or proc.poll() is not None:
                break
            time.sleep(0.2)
        wall = time.perf_counter() - wall0
    finally:
        stderr = _stop_worker(proc)
    span = conn.execute(q("bench_e2e_span"), {"run": run}).fetchone()
    lat = _latencies(conn, run)
    conn.close()
    seconds = float(span["seconds"]) if span and span["seconds"] else None
    successful = int(span["ok"]) if span else 0
    result: dict[str, Any] = {
        "tasks": tasks,
        "concurrency": concurrency,
        "successful": successful,
        "seconds": round(seconds, 3) if seconds else None,
        "jobs_per_second": round(successful / seconds, 1) if seconds else None,
        "wall_seconds_including_startup": round(wall, 3),
        "enqueue_seconds": round(enqueue_seconds, 3),
        "pickup_ms_p50": round(_percentile(lat, 50), 2),
        "pickup_ms_p99": round(_percentile(lat, 99), 2),
    }
    if successful < tasks:
        result["worker_stderr_tail"] = stderr[-2000:]
    return result


def _light_load(
    dsn: str, count: int, interval: float, concurrency: int, extra: Sequence[str]
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    worker_id = f"bench-{os.getpid()}"
    proc = _start_worker(dsn, concurrency, extra)
    try:
        _wait_ready(dsn, worker_id)
        with Client(dsn) as client:
            next_at = time.perf_counter()
            for i in range(count):
                client.enqueue(_TASK, kwargs={"run": run, "i": i})
                next_at += interval
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
        conn = connect(dsn)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = conn.execute(q("bench_e2e_successful"), {"run": run}).fetchone()
            if row and int(row["n"]) >= count:
                break
            time.sleep(0.1)
        lat = _latencies(conn, run)
        conn.close()
    finally:
        _stop_worker(proc)
    return {
        "tasks": len(lat),
        "interval_ms": interval * 1000,
        "pickup_ms_p50": round(_percentile(lat, 50), 2),
        "pickup_ms_p99": round(_percentile(lat, 99), 2),
        "pickup_ms_mean": round(statistics.fmean(lat), 2) if lat else None,
        "pickup_ms_max": round(max(lat), 2) if lat else None,
    }


def run_bench(
    *,
    dsn: str | None = None,
    tasks: int = 20000,
    concurrency: int = 20,
    light_tasks: int = 250,
    light_interval: float = 0.02,
    worker_args: Sequence[str] = (),
) -> dict[str, Any]:
    """Run both scenarios and return the report."""
    report: dict[str, Any] = {"task": _TASK, "executor": "thread"}
    with _database(dsn) as db:
        report["throughput"] = _throughput(db, tasks, concurrency, worker_args)
    if light_tasks > 0:
        with _database(dsn) as db:
            report["light_load"] = _light_load(
                db, light_tasks, light_interval, concurrency, worker_args
            )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m reproq.bench_e2e``)."""
    parser = argparse.ArgumentParser(prog="python -m reproq.bench_e2e", description=__doc__)
    parser.add_argument("--dsn", help="an existing server (default: a throwaway cluster)")
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--light-tasks", type=int, default=250)
    parser.add_argument("--light-interval", type=float, default=0.02, metavar="SECONDS")
    parser.add_argument("--json", metavar="FILE", help="also write the report here")
    parser.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        help="extra `reproq worker` argument (repeatable), e.g. --worker-arg=--poll-interval=1",
    )
    args = parser.parse_args(argv)
    report = run_bench(
        dsn=args.dsn,
        tasks=args.tasks,
        concurrency=args.concurrency,
        light_tasks=args.light_tasks,
        light_interval=args.light_interval,
        worker_args=args.worker_arg,
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
