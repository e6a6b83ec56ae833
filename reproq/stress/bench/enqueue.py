"""``enqueue``: the bulk enqueue rate of :meth:`Client.enqueue_many`, unique index in place."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from reproq.producer.client import Client
from reproq.producer.signature import Signature
from reproq.stress.bench.config import NOOP
from reproq.stress.bench.figures import RAW_COPY, Figure
from reproq.stress.bench.harness import Harness

__all__ = ["enqueue", "enqueue_figures"]


def enqueue(h: Harness) -> dict[str, Any]:
    """Bulk enqueue rate: N specs in one ``enqueue_many`` call."""
    n = h.config.enqueue_count
    h.progress.note(f"enqueue: {n:,} specs through Client.enqueue_many…")
    with h.database() as dsn:
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
    h.progress.note(f"enqueue: {total:,} specs in {seconds:.2f}s = {rate or 0:,.0f}/s")
    return {
        "specs": total,
        "seconds": round(seconds, 4),
        "specs_per_second": round(rate, 1) if rate else None,
        "spec_build_seconds": round(prepare, 4),
        "target_specs_per_second": 30_000,
    }


def enqueue_figures(result: Mapping[str, Any]) -> list[Figure]:
    """specs/s, against the COPY of the reference loop's rows (the same server's raw
    write rate)."""
    return [Figure("enqueue", result.get("specs_per_second"), "specs/s", RAW_COPY)]
