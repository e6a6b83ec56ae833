"""Backlog drains: ``e2e`` (one and several workers, every executor) and ``claim-growth``.

Both enqueue their tasks first, analyze, and only then start the workers, so they measure
a worker whose plans fit a full queue: the best case. ``e2e-burst`` measures the case
users meet first (:mod:`reproq.stress.bench.burst`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from reproq.db import translate_errors
from reproq.errors import ReproqError
from reproq.queries import q
from reproq.stress.bench.figures import RAW_CLAIM, Figure, drain_figures
from reproq.stress.bench.harness import Harness
from reproq.stress.bench.render import drain_text

__all__ = ["claim_growth", "e2e", "e2e_figures", "growth_figures"]

_HISTORY_CHUNK = 100_000


def _concurrency_for(executor: str, concurrency: int) -> int:
    """Slots per worker: one child process per slot is only worth it up to a few per CPU."""
    if executor == "process":
        return min(concurrency, 2 * (os.cpu_count() or 1))
    if executor == "subprocess":
        return min(concurrency, 8)
    return concurrency


def e2e(h: Harness) -> dict[str, Any]:
    """End-to-end no-op throughput for 1 and N workers and each executor."""
    cfg = h.config
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
        with h.database() as dsn:
            first_id = h.max_id(dsn)
            h.progress.note(f"e2e {label}: enqueueing {count:,} no-op tasks…")
            h.enqueue_noops(dsn, count, label)
            settings = h.worker_settings(
                executor=executor,
                concurrency=_concurrency_for(executor, slots),
                connections=connections,
            )
            try:
                result = h.drain(
                    dsn,
                    label=f"e2e {label}",
                    workers=workers,
                    settings=settings,
                    count=count,
                    first_id=first_id,
                )
            except ReproqError as exc:
                h.failures += 1
                result = {"workers": workers, "executor": executor, "error": str(exc)}
            result["connections"] = connections
            h.progress.note(f"e2e {label}: {drain_text(result)}")
            runs.append({"label": label, **result})
    return {"runs": runs, "target_tasks_per_second_one_worker": 15_000}


def claim_growth(h: Harness) -> dict[str, Any]:
    """Drain rate with little and with much finished history in the table."""
    cfg = h.config
    runs: list[dict[str, Any]] = []
    for history in cfg.growth_history:
        with h.database() as dsn:
            h.progress.note(f"claim-growth: inserting {history:,} finished rows…")
            began = time.perf_counter()
            with h.connect(dsn) as conn, translate_errors():
                for start in range(1, history + 1, _HISTORY_CHUNK):
                    stop = min(history, start + _HISTORY_CHUNK - 1)
                    conn.execute(q("stress_bench_insert_finished"), {"start": start, "stop": stop})
                    h.progress.update({"history rows": f"{stop:,}/{history:,}"})
                size = conn.execute(q("stress_bench_table_size")).fetchone()
            h.progress.done()
            insert_seconds = time.perf_counter() - began
            first_id = h.max_id(dsn)
            h.enqueue_noops(dsn, cfg.growth_count, f"growth-{history}")
            try:
                result = h.drain(
                    dsn,
                    label=f"claim-growth {history:,}",
                    workers=1,
                    settings=h.worker_settings(concurrency=cfg.e2e_concurrency),
                    count=cfg.growth_count,
                    first_id=first_id,
                )
            except ReproqError as exc:
                h.failures += 1
                result = {"error": str(exc)}
            result.update(
                {
                    "history_rows": history,
                    "history_insert_seconds": round(insert_seconds, 2),
                    "table_bytes": int(size["bytes"]) if size else None,
                }
            )
            h.progress.note(f"claim-growth {history:,} finished rows: {drain_text(result)}")
            runs.append(result)
    return {"runs": runs}


def e2e_figures(result: Mapping[str, Any]) -> list[Figure]:
    """Each e2e run's tasks/s (against the reference loop) and its worker's memory."""
    return [
        figure
        for run in result.get("runs", [])
        for figure in drain_figures(f"e2e {run.get('label')}", run)
    ]


def growth_figures(result: Mapping[str, Any]) -> list[Figure]:
    """Each claim-growth run's tasks/s, against the reference loop."""
    return [
        Figure(
            f"claim-growth {run.get('history_rows', 0):,} finished rows",
            run.get("tasks_per_second"),
            "tasks/s",
            RAW_CLAIM,
        )
        for run in result.get("runs", [])
    ]
