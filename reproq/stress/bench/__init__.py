"""``reproq bench``: throughput, latency and memory scenarios against a durable PostgreSQL.

Scenarios (each run in a fresh database of its own, dropped afterwards), in the order a
round runs them:

* ``raw-claim`` — the reference: a plain psycopg loop (4 threads, each its own
  autocommit connection) claiming 10 rows per round trip with ``FOR UPDATE SKIP LOCKED``
  and completing them in a second statement, on a task_runs-shaped table loaded by COPY
  and ``VACUUM ANALYZE``d (:mod:`~reproq.stress.bench.raw`). It keeps none of reproq's
  promises; it is the ceiling every reproq rate of the same round is divided by.
* ``enqueue`` — bulk enqueue rate: N specs through :meth:`Client.enqueue_many` with the
  unique active-spec index in place (divided by the reference's COPY rate).
* ``e2e`` — end-to-end no-op throughput on a backlog enqueued and analyzed before the
  workers start: 1 and several ``reproq worker`` processes (thread executor), then one
  worker per other executor.
* ``e2e-burst`` — one worker idle on an empty, analyzed queue; N rows in reproq-django's
  shape COPYed in and not analyzed (autovacuum is kept off task_runs unless
  ``autovacuum``); the drain rate from the database's clock, at each configured slot
  count (32 and 100).
* ``e2e-steady`` — producers enqueue at a fixed rate (5,000/s) for a while as one worker
  drains: the sustained completion rate, pickup p50/p99 under that load, and whether it
  kept up (the backlog when the load stops).
* ``latency`` — pickup latency (``started_at - enqueued_at``) at a light, fixed enqueue
  rate, with LISTEN/NOTIFY wake-ups and with polling only.
* ``claim-growth`` — drain rate of one worker with 10k and with 1M finished rows
  already in ``task_runs``: claim cost must not grow with history.

Every scenario that runs a worker reports its resident memory at the end
(``worker_rss_mb``, children included).

Run them with ``reproq bench raw-claim e2e-burst e2e-steady --repeat 3 --json out.json``
(``--scale 0.1`` for a quick look; docs/stress.md lists every flag).

Reading the ratios: a shared or virtual machine's speed drifts by tens of percent, so a
tasks/s figure alone compares badly between runs. Each round runs ``raw-claim`` first;
each reproq rate of that round is also given divided by it (``figures.<name>.ratio``,
printed as ``= 0.850x raw-claim``). A ratio near 1 means reproq's claim path costs about
what the plainest loop does; the gap is the price of its guarantees and of the plans it
got. ``--repeat K`` runs K rounds and gives each figure's K values, their median, each
round's ratio and the median ratio.

The server is a throwaway one with durable settings (``synchronous_commit=on``,
``fsync=on``), or the server of ``--dsn`` (its settings are reported as found). Every
result document names the machine, the PostgreSQL version and the settings that matter.

Modules: :mod:`~.config` (what and how big), :mod:`~.facts` (machine and server),
:mod:`~.harness` (databases, workers, drains), one module per scenario family
(:mod:`~.raw`, :mod:`~.enqueue`, :mod:`~.e2e`, :mod:`~.burst`, :mod:`~.steady`,
:mod:`~.latency`), :mod:`~.figures` (medians and ratios), :mod:`~.document` (rounds and
the JSON document) and :mod:`~.render` (the text summary).
"""

from __future__ import annotations

from reproq.stress.bench.config import BENCH_SETTINGS, SCENARIOS, BenchConfig
from reproq.stress.bench.document import run_bench
from reproq.stress.bench.facts import machine_info
from reproq.stress.bench.render import render_bench

__all__ = [
    "BENCH_SETTINGS",
    "SCENARIOS",
    "BenchConfig",
    "machine_info",
    "render_bench",
    "run_bench",
]
