"""lock_key and concurrency limits hold with many workers claiming at once."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from reproq.db import Conn, connect
from tests.integration.worker_harness import enqueue, running, wait_all

WORKERS = 4


def _ledger(conn: Conn, ledger: Path, key: str, seconds: float, seq: int, **opts: Any) -> int:
    return enqueue(conn, "ledger", str(ledger), key, seconds, seq, **opts)


def _max_overlap(ledger: Path, key: str) -> tuple[int, int]:
    """(most executions of ``key`` at one instant, how many executions there were)."""
    events: list[tuple[float, int]] = []
    lines = [line.split() for line in ledger.read_text().splitlines()]
    for name, start, end, _pid in lines:
        if name == key:
            events += [(float(start), 1), (float(end), -1)]
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak, len(events) // 2


class _Sampler:
    """Counts RUNNING rows per key from the database while the workers race."""

    def __init__(self, dsn: str, sql: str) -> None:
        self.dsn, self.sql = dsn, sql
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = connect(self.dsn)
        try:
            while not self._stop.is_set():
                found = conn.execute(self.sql).fetchone()
                self.peak = max(self.peak, found["n"] if found else 0)
                self.samples += 1
        finally:
            conn.close()


def test_several_workers_never_run_two_tasks_of_one_lock_key_at_once(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    # Each worker serves a queue of its own, so nothing but the key stops two of them
    # from taking its rows at the same moment.
    tight = [
        _ledger(conn, ledger, "tight", 0.02, i, lock_key="tight", queue=f"q{i % WORKERS}")
        for i in range(40)
    ]
    other = [_ledger(conn, ledger, f"free{i}", 0.02, i, queue=f"q{i % WORKERS}") for i in range(20)]
    sql = "SELECT count(*) AS n FROM task_runs WHERE status = 'RUNNING' AND lock_key = 'tight'"
    with _Sampler(dsn, sql) as sampler, ExitStack() as stack:
        for i in range(WORKERS):
            stack.enter_context(
                running(dsn, worker_id=f"racer-{i}", concurrency=4, queues=(f"q{i}",))
            )
        wait_all(conn, tight + other, "SUCCESSFUL", timeout=60)
    peak, runs = _max_overlap(ledger, "tight")
    assert runs == 40 and peak == 1
    assert sampler.samples > 10 and sampler.peak == 1
    ran_on = conn.execute(
        "SELECT count(DISTINCT worker_ids ->> -1) AS n FROM task_runs WHERE lock_key = 'tight'"
    ).fetchone()
    assert ran_on is not None and ran_on["n"] > 1  # the key really moved between workers


def test_several_workers_never_exceed_a_concurrency_limit(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    ids = [
        _ledger(
            conn,
            ledger,
            "api",
            0.02,
            i,
            concurrency_key="api",
            concurrency_limit=2,
            queue=f"q{i % WORKERS}",
        )
        for i in range(40)
    ]
    sql = "SELECT count(*) AS n FROM task_runs WHERE status = 'RUNNING' AND concurrency_key = 'api'"
    with _Sampler(dsn, sql) as sampler, ExitStack() as stack:
        for i in range(WORKERS):
            stack.enter_context(
                running(dsn, worker_id=f"limited-{i}", concurrency=4, queues=(f"q{i}",))
            )
        wait_all(conn, ids, "SUCCESSFUL", timeout=60)
    peak, runs = _max_overlap(ledger, "api")
    assert runs == 40 and 1 <= peak <= 2
    assert sampler.peak <= 2


def test_a_worker_wakes_for_a_key_another_worker_just_released(
    dsn: str, conn: Conn, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    ids = [_ledger(conn, ledger, "k", 0.01, i, lock_key="k") for i in range(10)]
    with ExitStack() as stack:
        for i in range(2):
            # Slow polling: only the release notification can make this quick.
            stack.enter_context(
                running(dsn, worker_id=f"sleepy-{i}", poll_interval=5.0, max_poll_interval=5.0)
            )
        wait_all(conn, ids, "SUCCESSFUL", timeout=20)
