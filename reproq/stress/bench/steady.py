"""``e2e-steady``: producers offer a fixed rate for a while, one worker keeps up or not.

The worker starts idle on an empty, analyzed queue (as in ``e2e-burst``, autovacuum
kept off task_runs unless ``autovacuum``); then
``steady_producers`` threads, each with a client of its own, enqueue no-op tasks through
:meth:`Client.enqueue_many` at ``steady_rate`` per second in total for
``steady_seconds``, each enqueuing whatever its share of the schedule has come due (so a
late producer catches up rather than lowering the rate). The figures come from the
database's clock: the completion rate within the load window, pickup latency
(``started_at - enqueued_at``) of every task of the run, and the backlog (READY or
RUNNING rows) the instant the load stopped. The worker *kept up* when that backlog is
at most one second of the rate actually offered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from reproq.errors import DatabaseError, ReproqError
from reproq.producer.client import Client
from reproq.producer.signature import Signature
from reproq.queries import q
from reproq.stress.bench.config import NOOP
from reproq.stress.bench.figures import RAW_CLAIM, Figure
from reproq.stress.bench.harness import Harness, latency_ms, worker_rss_mb
from reproq.stress.bench.render import steady_line

__all__ = ["e2e_steady", "steady_figures"]

_TICK = 0.005
"""Seconds a producer sleeps when none of its schedule is due."""
_MAX_BATCH = 1_000
"""Most specs a producer enqueues in one call (after a stall it catches up in these)."""


def e2e_steady(h: Harness) -> dict[str, Any]:
    """Offer ``steady_rate`` tasks/s for ``steady_seconds`` to one worker."""
    cfg = h.config
    h.progress.note(
        f"e2e-steady: {cfg.steady_rate:,.0f} tasks/s for {cfg.steady_seconds:g}s from "
        f"{cfg.steady_producers} producers, one worker of {cfg.steady_concurrency} slots…"
    )
    try:
        result = _steady(h)
    except ReproqError as exc:
        h.failures += 1
        result = {"error": str(exc)}
    out = {
        "rate_per_second": cfg.steady_rate,
        "seconds": cfg.steady_seconds,
        "producers": cfg.steady_producers,
        "concurrency": cfg.steady_concurrency,
        **result,
        "target_pickup_ms": {"p99": 50},
    }
    h.progress.note(steady_line(out, {}))
    return out


def _steady(h: Harness) -> dict[str, Any]:
    cfg = h.config
    with h.database() as dsn:
        h.empty_queue(dsn)
        first_id = h.max_id(dsn)
        settings = h.worker_settings(concurrency=cfg.steady_concurrency, user_defaults=True)
        with h.workers(dsn, label="e2e-steady", settings=settings) as fleet:
            h.wait_registered(dsn, fleet, idle=cfg.idle_seconds)
            since = h.one(dsn, q("stress_now"))["now"]
            enqueued = _produce(h, dsn)
            until = h.one(dsn, q("stress_now"))["now"]
            state = h.one(dsn, q("stress_drain_state"), {"first_id": first_id})
            drain = h.wait_finished(
                dsn, label="e2e-steady finished", first_id=first_id, count=enqueued, fleet=fleet
            )
            rss = worker_rss_mb(fleet)
        window = (until - since).total_seconds()
        analyzed = h.autoanalyzed_after(dsn, since)
        done = h.one(
            dsn,
            q("stress_bench_finished_between"),
            {"first_id": first_id, "since": since, "until": until},
        )
        pickup = h.one(dsn, q("stress_bench_pickup"), {"first_id": first_id})
        counts = h.one(dsn, q("stress_bench_counts"), {"first_id": first_id})
    offered = enqueued / window if window > 0 else 0.0
    backlog = int(state["running"]) + int(state["due"])
    return {
        "enqueued": enqueued,
        "window_seconds": round(window, 3),
        "offered_per_second": round(offered, 1),
        "completed_in_window": int(done["n"]),
        "completed_per_second": round(int(done["n"]) / window, 1) if window > 0 else None,
        "backlog_at_end": backlog,
        "kept_up": backlog <= max(1.0, offered),
        "drain_after_seconds": round(drain, 3),
        "successful": int(counts["done"]),
        "failed": int(counts["failed"]),
        "pickup_ms": latency_ms(pickup),
        "worker_rss_mb": rss,
        "autovacuum": cfg.autovacuum,
        "autoanalyzed_after_seconds": analyzed,
    }


def _produce(h: Harness, dsn: str) -> int:
    """Enqueue on the schedule from every producer thread; returns how many were enqueued."""
    cfg = h.config
    share = cfg.steady_rate / cfg.steady_producers
    sent = [0] * cfg.steady_producers
    errors: list[BaseException] = []
    began = time.monotonic()

    def produce(i: int) -> None:
        try:
            with Client(dsn, max_connections=1) as client:
                while (elapsed := time.monotonic() - began) < cfg.steady_seconds:
                    due = min(_MAX_BATCH, int(share * elapsed) - sent[i])
                    if due <= 0:
                        time.sleep(_TICK)
                        continue
                    client.enqueue_many(
                        [
                            Signature(task_path=NOOP, args=("steady", i, sent[i] + j))
                            for j in range(due)
                        ]
                    )
                    sent[i] += due
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [
        threading.Thread(target=produce, args=(i,), name=f"reproq-bench-producer-{i}", daemon=True)
        for i in range(cfg.steady_producers)
    ]
    for thread in threads:
        thread.start()
    while alive := [t for t in threads if t.is_alive()]:
        elapsed = time.monotonic() - began
        h.progress.update(
            {
                "e2e-steady enqueued": f"{sum(sent):,}",
                "elapsed": f"{elapsed:.1f}s",
                "offered/s": sum(sent) / elapsed if elapsed else 0.0,
            }
        )
        alive[0].join(timeout=0.25)
    h.progress.done()
    if errors:
        raise DatabaseError(f"e2e-steady producer: {errors[0]}") from errors[0]
    return sum(sent)


def steady_figures(result: Mapping[str, Any]) -> list[Figure]:
    """Completed tasks/s (against the reference loop), pickup p50/p99, backlog, memory."""
    pickup = result.get("pickup_ms") or {}
    return [
        Figure("e2e-steady completed", result.get("completed_per_second"), "tasks/s", RAW_CLAIM),
        Figure("e2e-steady offered", result.get("offered_per_second"), "tasks/s"),
        Figure("e2e-steady pickup p50", pickup.get("p50"), "ms"),
        Figure("e2e-steady pickup p99", pickup.get("p99"), "ms"),
        Figure("e2e-steady backlog", result.get("backlog_at_end"), "tasks"),
        Figure("e2e-steady rss", result.get("worker_rss_mb"), "MB"),
    ]
