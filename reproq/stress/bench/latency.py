"""``latency``: pickup latency at a light, fixed enqueue rate, with LISTEN/NOTIFY and with
polling only."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from reproq.db import translate_errors
from reproq.producer.client import Client
from reproq.queries import q
from reproq.stress.bench.config import LATENCY_MODES, NOOP
from reproq.stress.bench.figures import Figure
from reproq.stress.bench.harness import Harness, latency_ms, worker_rss_mb
from reproq.stress.bench.render import latency_text

__all__ = ["latency", "latency_figures"]


def latency(h: Harness) -> dict[str, Any]:
    """Pickup latency at a light fixed rate, with NOTIFY and with polling only."""
    cfg = h.config
    out: dict[str, Any] = {
        "rate_per_second": cfg.latency_rate,
        "seconds": cfg.latency_seconds,
    }
    for mode, poll in LATENCY_MODES:
        with h.database() as dsn:
            if mode != "notify":
                with h.connect(dsn) as conn, translate_errors():
                    conn.execute(q("stress_bench_disable_notify"))
            args = ("--poll-interval", poll) if poll else ()
            out[mode] = {
                "poll_interval": poll or "worker default",
                **_latency_run(h, dsn, mode, args),
            }
        h.progress.note(f"latency {mode}: {latency_text(out[mode])}")
    out["target_ms"] = {"p50": 5, "p99": 20}
    return out


def _latency_run(h: Harness, dsn: str, mode: str, args: Sequence[str]) -> dict[str, Any]:
    cfg = h.config
    settings = h.worker_settings(concurrency=10, extra_args=args)
    total = max(1, round(cfg.latency_rate * cfg.latency_seconds))
    first_id = h.max_id(dsn)
    with h.workers(dsn, label=f"latency-{mode}", settings=settings) as fleet:
        with Client(dsn) as client:
            # Wait for the worker to be up and listening before the measured part.
            client.enqueue(NOOP, ("warmup", mode))
            h.wait_finished(dsn, label=f"latency {mode} warm-up", first_id=first_id, count=1)
            measured_from = h.max_id(dsn)
            interval = 1.0 / cfg.latency_rate
            began = time.monotonic()
            for i in range(total):
                pause = began + i * interval - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                client.enqueue(NOOP, (mode, i))
                if i % max(1, int(cfg.latency_rate)) == 0:
                    h.progress.update({f"latency {mode}": f"{i:,}/{total:,}"})
        h.wait_finished(
            dsn, label=f"latency {mode}", first_id=measured_from, count=total, poll=0.05
        )
        rss = worker_rss_mb(fleet)
    pickup = h.one(dsn, q("stress_bench_pickup"), {"first_id": measured_from})
    return {"tasks": total, "pickup_ms": latency_ms(pickup), "worker_rss_mb": rss}


def latency_figures(result: Mapping[str, Any]) -> list[Figure]:
    """Pickup p50 and p99 of each mode, in ms (no ratio: a latency is not a rate)."""
    found: list[Figure] = []
    for mode, _ in LATENCY_MODES:
        pickup = (result.get(mode) or {}).get("pickup_ms") or {}
        for pct in ("p50", "p99"):
            found.append(Figure(f"latency {mode} {pct}", pickup.get(pct), "ms"))
    return found
