"""``raw-claim``: the reference every reproq rate is divided by.

A plain claim-and-complete loop, as anyone would write one on psycopg: ``threads``
threads, each with its own autocommit connection, claiming ``batch`` rows per round trip
with ``FOR UPDATE SKIP LOCKED`` and marking them SUCCESSFUL in a second statement. Its
table has task_runs' shape where the loop touches it (a JSONB spec, a unique spec hash
over active rows, one partial READY index in claim order), is loaded by COPY and then
``VACUUM ANALYZE``d, so its plans are the best ones the server can make.

It keeps none of reproq's promises (no fencing on completion, no fairness, aging, keys,
limits, retries, heartbeats or workflow progress): it is a ceiling measured in the same
run on the same server, not a competitor. Its COPY is timed too, as the server's raw
write rate, which the enqueue rate is divided by.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from reproq.db import Conn, translate_errors
from reproq.errors import DatabaseError
from reproq.queries import q
from reproq.spec import build_spec, canonical_json, spec_hash
from reproq.stress.bench.config import NOOP
from reproq.stress.bench.figures import RAW_CLAIM, RAW_COPY, Figure
from reproq.stress.bench.harness import Harness

__all__ = ["raw_claim", "raw_figures"]


def raw_claim(h: Harness) -> dict[str, Any]:
    """Load ``raw_count`` rows by COPY, analyze, and drain them with the reference loop."""
    cfg = h.config
    n = cfg.raw_count
    h.progress.note(
        f"raw-claim: {n:,} rows, {cfg.raw_threads} threads claiming {cfg.raw_batch} at a time…"
    )
    with h.database(migrated=False) as dsn:
        rows = []
        for i in range(n):
            spec = build_spec(NOOP, ("raw", i))
            rows.append((canonical_json(spec), spec_hash(spec)))
        with h.connect(dsn) as conn, translate_errors():
            conn.execute(q("stress_raw_create"))
            began = time.perf_counter()
            with conn.cursor() as cur, cur.copy(q("stress_raw_copy")) as copy:
                for row in rows:
                    copy.write_row(row)
            copy_seconds = time.perf_counter() - began
            conn.execute(q("stress_raw_vacuum_analyze"))
        claims, wall = _drain(h, dsn)
        counts = h.one(dsn, q("stress_raw_counts"))
    busy = (counts["last_finished"] - counts["first_started"]).total_seconds()
    if int(counts["done"]) != n:
        raise DatabaseError(f"raw-claim: {counts['done']} of {n} rows finished")
    result = {
        "tasks": n,
        "threads": cfg.raw_threads,
        "batch": cfg.raw_batch,
        "claims": claims,
        "seconds": round(busy, 4),
        "wall_seconds": round(wall, 3),
        "tasks_per_second": round(n / busy, 1) if busy > 0 else None,
        "copy_seconds": round(copy_seconds, 4),
        "copy_rows_per_second": round(n / copy_seconds, 1) if copy_seconds > 0 else None,
    }
    h.progress.note(
        f"raw-claim: {result['tasks_per_second'] or 0:,.0f} tasks/s, "
        f"COPY {result['copy_rows_per_second'] or 0:,.0f} rows/s"
    )
    return result


def _drain(h: Harness, dsn: str) -> tuple[int, float]:
    """Run the loop on every thread until the table has no READY row; returns the claims
    made and the wall seconds."""
    cfg = h.config
    conns = [h.connect(dsn) for _ in range(cfg.raw_threads)]
    done = [0] * len(conns)
    trips = [0] * len(conns)
    errors: list[BaseException] = []
    start = threading.Barrier(len(conns) + 1)

    def loop(i: int, conn: Conn) -> None:
        params: dict[str, Any] = {"worker": f"raw-{i}", "queue": "default", "batch": cfg.raw_batch}
        try:
            start.wait()
            while True:
                claimed = conn.execute(q("stress_raw_claim"), params).fetchall()
                trips[i] += 1
                if not claimed:
                    return
                ids = [row["result_id"] for row in claimed]
                conn.execute(q("stress_raw_complete"), {"ids": ids})
                done[i] += len(ids)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [
        threading.Thread(target=loop, args=(i, c), name=f"reproq-bench-raw-{i}", daemon=True)
        for i, c in enumerate(conns)
    ]
    try:
        for thread in threads:
            thread.start()
        start.wait()
        began = time.perf_counter()
        while alive := [t for t in threads if t.is_alive()]:
            elapsed = time.perf_counter() - began
            h.progress.update(
                {
                    "raw-claim": f"{sum(done):,}/{cfg.raw_count:,}",
                    "rate/s": sum(done) / elapsed if elapsed else 0.0,
                }
            )
            alive[0].join(timeout=0.25)
        wall = time.perf_counter() - began
    finally:
        for conn in conns:
            conn.close()
        h.progress.done()
    if errors:
        raise DatabaseError(f"raw-claim: {errors[0]}") from errors[0]
    return sum(trips), wall


def raw_figures(result: Mapping[str, Any]) -> list[Figure]:
    """The loop's tasks/s and its COPY's rows/s: the references of the round."""
    return [
        Figure(RAW_CLAIM, result.get("tasks_per_second"), "tasks/s"),
        Figure(RAW_COPY, result.get("copy_rows_per_second"), "rows/s"),
    ]
