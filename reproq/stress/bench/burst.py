"""``e2e-burst``: a worker idle on an empty queue, then a burst it has not planned for.

What every deployment meets each morning: ``reproq migrate``, the worker started on an
empty (analyzed) queue, then a burst of rows from another client. The rows are COPYed in
reproq-django's shape (every column named, as on a Django-created table without
defaults; ``run_after`` NULL; ``concurrency_limit`` 0) and the table is *not* analyzed
afterwards, so the worker's statements run on the statistics of an empty table until
autovacuum gets to it. By default autovacuum is kept off task_runs for the run, so the
whole drain is on those statistics (the worst case, and a repeatable one); with
``autovacuum`` on, ``autoanalyzed_after_seconds`` says when it analyzed. The rate is
N / (last ``finished_at`` - first ``started_at``), both from the database's clock.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from reproq.db import translate_errors
from reproq.errors import ReproqError
from reproq.queries import q
from reproq.spec import build_spec, canonical_json, spec_hash
from reproq.stress.bench.config import NOOP
from reproq.stress.bench.figures import Figure, drain_figures
from reproq.stress.bench.harness import Harness, worker_rss_mb
from reproq.stress.bench.render import drain_text

__all__ = ["burst_figures", "django_row", "e2e_burst"]

_TARGETS = {"c32": 10_000, "c100": 15_000}
"""Tasks/s a burst should drain at, by worker slots."""


def django_row(spec_json: str, digest: str, now: dt.datetime) -> dict[str, Any]:
    """One READY no-op row as reproq-django writes it, column by column, in the order of
    ``stress_bench_copy_burst``."""
    return {
        "backend_alias": "default",
        "queue_name": "default",
        "priority": 0,
        "run_after": None,
        "spec_json": spec_json,
        "spec_hash": digest,
        "task_path": NOOP,
        "status": "READY",
        "enqueued_at": now,
        "started_at": None,
        "last_attempted_at": None,
        "finished_at": None,
        "attempts": 0,
        "max_attempts": 3,
        "timeout_seconds": 900,
        "lock_key": None,
        "concurrency_key": None,
        "concurrency_limit": 0,
        "worker_ids": "[]",
        "return_json": None,
        "errors_json": "[]",
        "metadata_json": "{}",
        "last_error": None,
        "failed_at": None,
        "leased_until": None,
        "leased_by": None,
        "logs_uri": None,
        "artifacts_uri": None,
        "expires_at": None,
        "parent_id": None,
        "workflow_id": None,
        "wait_count": 0,
        "created_at": now,
        "updated_at": now,
        "cancel_requested": False,
    }


def e2e_burst(h: Harness) -> dict[str, Any]:
    """One burst drain per configured slot count, each in a fresh database."""
    cfg = h.config
    runs: list[dict[str, Any]] = []
    for concurrency in cfg.burst_concurrency:
        try:
            result = _burst(h, concurrency)
        except ReproqError as exc:
            h.failures += 1
            result = {"concurrency": concurrency, "error": str(exc)}
        h.progress.note(f"e2e-burst c{concurrency}: {drain_text(result)}")
        runs.append(result)
    return {
        "tasks": cfg.burst_count,
        "idle_seconds": cfg.idle_seconds,
        "runs": runs,
        "target_tasks_per_second": _TARGETS,
        "target_ratio_to_raw_claim": {"c100": 0.85},
        "target_worker_rss_mb": {"c100": 150},
    }


def _burst(h: Harness, concurrency: int) -> dict[str, Any]:
    cfg = h.config
    label = f"e2e-burst c{concurrency}"
    specs = [build_spec(NOOP, (label, i)) for i in range(cfg.burst_count)]
    encoded = [(canonical_json(spec), spec_hash(spec)) for spec in specs]
    with h.database() as dsn:
        h.empty_queue(dsn)
        first_id = h.max_id(dsn)
        settings = h.worker_settings(concurrency=concurrency, user_defaults=True)
        with h.workers(dsn, label=label, settings=settings) as fleet:
            h.progress.note(f"{label}: worker idle on the empty queue…")
            h.wait_registered(dsn, fleet, idle=cfg.idle_seconds)
            h.progress.note(f"{label}: COPY {len(encoded):,} rows…")
            now = dt.datetime.now(dt.UTC)  # enqueued_at: Django stamps its rows as it writes
            began = time.perf_counter()
            with (
                h.connect(dsn) as conn,
                translate_errors(),
                conn.cursor() as cur,
                cur.copy(q("stress_bench_copy_burst")) as copy,
            ):
                for text, digest in encoded:
                    copy.write_row(tuple(django_row(text, digest, now).values()))
            copy_seconds = time.perf_counter() - began
            copied_at = h.one(dsn, q("stress_now"))["now"]
            wall = h.wait_finished(
                dsn, label=label, first_id=first_id, count=len(encoded), fleet=fleet
            )
            rss = worker_rss_mb(fleet)
        analyzed = h.autoanalyzed_after(dsn, copied_at)
        drained = h.drained(dsn, first_id=first_id, count=len(encoded))
    return {
        "concurrency": concurrency,
        "workers": 1,
        "executor": settings.executor,
        **drained,
        "wall_seconds": round(wall, 3),
        "copy_seconds": round(copy_seconds, 4),
        "worker_rss_mb": rss,
        "autovacuum": cfg.autovacuum,
        "autoanalyzed_after_seconds": analyzed,
    }


def burst_figures(result: Mapping[str, Any]) -> list[Figure]:
    """Each burst's tasks/s (against the reference loop) and its worker's memory."""
    return [
        figure
        for run in result.get("runs", [])
        for figure in drain_figures(f"e2e-burst c{run.get('concurrency')}", run)
    ]
