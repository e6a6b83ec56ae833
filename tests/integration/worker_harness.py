"""Helpers for the worker tests: workers with short leases, enqueueing, waiting on rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reproq.db import Conn
from reproq.engine.worker import Worker, WorkerOptions
from reproq.executors.base import Executor
from reproq.producer.enqueue import insert_task
from reproq.producer.signature import Signature

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = "tests.tasks.sample"

# Short leases and fast polling keep the suite quick; generous margins keep it stable.
FAST: dict[str, Any] = {
    "concurrency": 4,
    "lease_seconds": 2.0,
    "heartbeat_seconds": 0.5,
    "reclaim_interval_seconds": 0.5,
    "poll_interval": 0.05,
    "max_poll_interval": 0.2,
    "shutdown_timeout": 5.0,
    "allowed_task_modules": ("tests.tasks.", "reproq.demo."),
}


def options(**overrides: Any) -> WorkerOptions:
    """Worker options for tests: :data:`FAST` plus ``overrides``."""
    values = {**FAST, "worker_id": f"test-{os.getpid()}-{time.monotonic_ns()}", **overrides}
    return WorkerOptions(**values)


@contextmanager
def running(dsn: str, *, executor: Executor | None = None, **overrides: Any) -> Iterator[Worker]:
    """A started worker (ready to take tasks) that is stopped and joined on exit."""
    worker = Worker(dsn, options(**overrides), executor=executor)
    worker.start()
    try:
        wait_until(lambda: worker.ready.is_set() or worker.error is not None, 20)
        if worker.error is not None:
            raise worker.error
        yield worker
    finally:
        worker.request_stop()
        if not worker.join(30):
            worker.request_stop(force=True)
            worker.join(10)
        if worker.error is not None:
            raise worker.error


def enqueue(conn: Conn, func: str, *args: Any, **options: Any) -> int:
    """Enqueue ``tests.tasks.sample.<func>`` (or a full dotted path) with ``args``."""
    kwargs = options.pop("kwargs", {})
    path = func if "." in func else f"{SAMPLE}.{func}"
    sig = Signature(task_path=path, args=args, kwargs=kwargs, **options)
    return insert_task(conn, sig.to_new_task(), dedup=False)


def row(conn: Conn, result_id: int) -> dict[str, Any]:
    """The task_runs row."""
    found = conn.execute("SELECT * FROM task_runs WHERE result_id = %s", (result_id,)).fetchone()
    assert found is not None, f"no task run {result_id}"
    return found


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:g}s")
        time.sleep(interval)


def wait_status(
    conn: Conn, result_id: int, statuses: str | Sequence[str], timeout: float = 20.0
) -> dict[str, Any]:
    """Wait until the row is in one of ``statuses``; returns the row."""
    wanted = {statuses} if isinstance(statuses, str) else set(statuses)

    def check() -> dict[str, Any] | None:
        found = row(conn, result_id)
        return found if found["status"] in wanted else None

    try:
        result: dict[str, Any] = wait_until(check, timeout)
    except AssertionError:
        raise AssertionError(
            f"task {result_id} not in {sorted(wanted)} within {timeout}s: {row(conn, result_id)}"
        ) from None
    return result


def wait_retry(conn: Conn, result_id: int, attempts: int, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until failed attempt ``attempts`` put the row back to READY; returns the row."""

    def check() -> dict[str, Any] | None:
        found = row(conn, result_id)
        done = found["status"] == "READY" and found["attempts"] == attempts
        return found if done else None

    result: dict[str, Any] = wait_until(check, timeout)
    return result


def wait_all(conn: Conn, ids: Sequence[int], status: str, timeout: float = 30.0) -> None:
    """Wait until every row of ``ids`` has ``status``."""

    def check() -> bool:
        found = conn.execute(
            "SELECT count(*) AS n FROM task_runs WHERE result_id = ANY(%s) AND status = %s",
            (list(ids), status),
        ).fetchone()
        return found is not None and found["n"] == len(ids)

    wait_until(check, timeout)


def errors(conn: Conn, result_id: int) -> list[dict[str, Any]]:
    """The row's errors_json entries."""
    value: list[dict[str, Any]] = row(conn, result_id)["errors_json"]
    return value


def make_due(conn: Conn, result_id: int) -> None:
    """Skip a retry's backoff: make the READY row due now."""
    conn.execute(
        "UPDATE task_runs SET run_after = now() WHERE result_id = %s AND status = 'READY'",
        (result_id,),
    )


def worker_env() -> dict[str, str]:
    """Environment for ``reproq worker`` subprocesses: the repository on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "WORKER_ID")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_cli_worker(dsn: str, worker_id: str, *extra: str) -> subprocess.Popen[bytes]:
    """A ``reproq worker`` subprocess with test timings."""
    cmd = [
        sys.executable,
        "-m",
        "reproq",
        "worker",
        "--dsn",
        dsn,
        "--worker-id",
        worker_id,
        "--concurrency",
        "2",
        "--allowed-task-modules",
        "tests.tasks.",
        "--lease-seconds",
        "2",
        "--heartbeat-seconds",
        "0.5",
        "--reclaim-interval-seconds",
        "0.5",
        "--poll-interval",
        "0.05",
        *extra,
    ]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Signal a subprocess and wait for it; its exit code and stderr."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err.decode(errors="replace")


def registered(conn: Conn, worker_id: str) -> bool:
    """Whether the worker id is in the registry."""
    found = conn.execute(
        "SELECT 1 FROM reproq_workers WHERE worker_id = %s", (worker_id,)
    ).fetchone()
    return found is not None
