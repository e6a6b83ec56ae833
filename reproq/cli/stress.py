"""``reproq torture`` and ``reproq bench``: the stress harness's command line.

The harness itself (``reproq.stress``) is imported only when one of these commands
runs: the core CLI stays free of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import TYPE_CHECKING, Any

from reproq.durations import parse_duration
from reproq.errors import UsageError

if TYPE_CHECKING:
    from reproq.stress.bench import BenchConfig


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``torture`` and ``bench`` commands."""
    torture = subparsers.add_parser(
        "torture",
        help="run real workers through injected faults, then check reproq's invariants",
        description=(
            "Start a throwaway PostgreSQL (or use --dsn), run real `reproq worker` and "
            "`reproq beat` processes under a seeded mix of work and faults, drain, and "
            "check that no task was lost, none completed twice, lock keys and limits "
            "held, and more. Exits 1 when any invariant failed."
        ),
    )
    torture.add_argument(
        "--duration",
        default="5m",
        metavar="DURATION",
        help="load phase length, e.g. 60s, 5m (default 5m)",
    )
    torture.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    torture.add_argument(
        "--concurrency", type=int, default=50, help="slots per worker (default 50)"
    )
    torture.add_argument(
        "--connections",
        type=int,
        default=1,
        metavar="N",
        help="database connections (lanes) per worker, sharing its slots (default 1)",
    )
    torture.add_argument(
        "--tasks",
        type=int,
        metavar="N",
        help="workload items to enqueue in total (default: --rate x duration)",
    )
    torture.add_argument(
        "--rate",
        type=float,
        default=60.0,
        help="workload items enqueued per second (default 60; a chain or chord is one)",
    )
    torture.add_argument(
        "--faults",
        default="all",
        metavar="LIST",
        help=(
            "comma-separated faults: kill, stop, term, db-kill, db-restart, slow, "
            "db-freeze; 'all' (default) or 'none'"
        ),
    )
    torture.add_argument(
        "--fault-interval",
        metavar="DURATION",
        help="mean time between faults (default: scaled to the duration, 2-6s)",
    )
    torture.add_argument("--seed", type=int, help="seed of the workload and fault plan")
    torture.add_argument(
        "--dsn",
        help=(
            "run in this (dedicated) database instead of a throwaway server; "
            "db-restart and db-freeze are then skipped"
        ),
    )
    torture.add_argument(
        "--executor",
        default="mixed",
        choices=("mixed", "thread", "subprocess"),
        help="executor of the workers: mixed (default) runs the first worker with the "
        "subprocess executor (4 slots: each task starts an interpreter) and the rest with "
        "thread; subprocess runs every worker so",
    )
    torture.add_argument(
        "--lease-seconds",
        type=float,
        default=4.0,
        help="worker lease (default 4; short, so expiries happen within the run)",
    )
    torture.add_argument(
        "--drain-timeout",
        default="90s",
        metavar="DURATION",
        help="how long to wait for the queue to drain after the load (default 90s)",
    )
    torture.add_argument("--beats", type=int, default=2, help="racing beat processes (default 2)")
    torture.add_argument(
        "--log-dir", help="keep process logs here (default: a temp dir, kept only on failure)"
    )
    torture.add_argument(
        "--json", metavar="FILE", help="also write the report as JSON ('-': stdout)"
    )
    torture.set_defaults(func=handle_torture)

    bench = subparsers.add_parser(
        "bench",
        help="measure throughput, pickup latency and memory against a raw reference loop",
        description=(
            "Run benchmark scenarios against a throwaway PostgreSQL with durable settings "
            "(synchronous_commit=on, fsync=on), or against the server of --dsn. Each "
            "scenario uses a fresh database. Prints the machine, the PostgreSQL version "
            "and settings, and the results; every rate also as a ratio to raw-claim, the "
            "plain claim loop measured in the same round (docs/stress.md)."
        ),
    )
    bench.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help="scenarios to run, e.g. raw-claim e2e-burst (default: all; docs/stress.md)",
    )
    bench.add_argument(
        "--scenario",
        action="append",
        default=[],
        dest="more_scenarios",
        metavar="NAME",
        help="a scenario to run (repeatable; the same as naming it as an argument)",
    )
    bench.add_argument(
        "--dsn",
        help="a database on the server to use; scenarios create and drop databases there",
    )
    bench.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="K",
        help="rounds: run every scenario K times, report each round and the medians (default 1)",
    )
    bench.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every default task count (e.g. 0.1 for a quick run; default 1); "
        "the size flags below are taken as given",
    )
    bench.add_argument(
        "--workers",
        type=int,
        default=0,
        help="worker processes of the multi-worker e2e run (default: one per CPU, min 2)",
    )
    bench.add_argument(
        "--executors",
        default="mock,process,subprocess",
        metavar="LIST",
        help="executors to measure besides thread in e2e (default mock,process,subprocess)",
    )
    bench.add_argument(
        "--autovacuum",
        action="store_true",
        help="let autovacuum analyze task_runs during e2e-burst and e2e-steady (default: "
        "kept off, so the worker runs on the empty queue's statistics throughout)",
    )
    sizes = bench.add_argument_group("sizes")
    sizes.add_argument("--raw-tasks", type=int, metavar="N", help="raw-claim rows (50000)")
    sizes.add_argument("--enqueue-tasks", type=int, metavar="N", help="enqueue specs (100000)")
    sizes.add_argument("--burst-tasks", type=int, metavar="N", help="e2e-burst rows (50000)")
    sizes.add_argument(
        "--burst-concurrency",
        metavar="LIST",
        help="e2e-burst: one run per slot count, comma-separated (32,100)",
    )
    sizes.add_argument(
        "--steady-rate", type=float, metavar="N", help="e2e-steady tasks offered per second (5000)"
    )
    sizes.add_argument(
        "--steady-duration", metavar="DURATION", help="e2e-steady load phase, e.g. 30s (20s)"
    )
    sizes.add_argument(
        "--steady-producers", type=int, metavar="N", help="e2e-steady producer threads (2)"
    )
    sizes.add_argument(
        "--steady-concurrency", type=int, metavar="N", help="e2e-steady worker slots (100)"
    )
    bench.add_argument(
        "--json", metavar="FILE", help="write the result document as JSON ('-': stdout)"
    )
    bench.set_defaults(func=handle_bench)


def handle_torture(args: argparse.Namespace) -> int:
    """Run ``reproq torture``."""
    from pathlib import Path

    from reproq.stress.faults import parse_fault_kinds
    from reproq.stress.report import render_table, write_json
    from reproq.stress.torture import TortureConfig, run_torture

    if args.workers < 1 or args.concurrency < 1:
        raise UsageError("--workers and --concurrency must be at least 1")
    if args.tasks is not None and args.tasks < 1:
        raise UsageError("--tasks must be at least 1")
    if args.rate <= 0:
        raise UsageError("--rate must be positive")
    duration = parse_duration(args.duration, key="--duration")
    if duration <= 0:
        raise UsageError("--duration must be positive")
    config = TortureConfig(
        duration=duration,
        workers=args.workers,
        concurrency=args.concurrency,
        connections=args.connections,
        tasks=args.tasks,
        rate=args.rate,
        faults=parse_fault_kinds(args.faults),
        fault_interval=(
            parse_duration(args.fault_interval, key="--fault-interval")
            if args.fault_interval
            else None
        ),
        seed=args.seed,
        dsn=args.dsn,
        executor=args.executor,
        lease_seconds=args.lease_seconds,
        drain_timeout=parse_duration(args.drain_timeout, key="--drain-timeout"),
        beats=max(0, args.beats),
        log_dir=Path(args.log_dir) if args.log_dir else None,
    )
    # Faults make the harness's own pools reconnect; that is expected, not news.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    report = run_torture(config)
    print(render_table(report))
    if args.json:
        write_json(args.json, report.to_json())
    return 0 if report.ok else 1


def handle_bench(args: argparse.Namespace) -> int:
    """Run ``reproq bench``."""
    from reproq.stress.bench import render_bench, run_bench
    from reproq.stress.report import write_json

    config = _bench_config(args)
    document = run_bench(config)
    print(render_bench(document), file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        write_json(args.json, document)
        if args.json != "-":
            print(f"results written to {args.json}", file=sys.stderr)
    return 0


def _positive_ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UsageError(f"{flag} needs whole numbers of at least 1, got {text!r}")
    return values


def _bench_config(args: argparse.Namespace) -> BenchConfig:
    """The bench's config: defaults, scaled by --scale, then the size flags as given."""
    from reproq.stress.bench import SCENARIOS, BenchConfig

    scenarios = tuple(dict.fromkeys([*args.scenarios, *args.more_scenarios])) or SCENARIOS
    for name in scenarios:
        if name not in SCENARIOS:
            raise UsageError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    if args.scale <= 0:
        raise UsageError("--scale must be positive")
    if args.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    executors = tuple(e.strip() for e in args.executors.split(",") if e.strip())
    for name in executors:
        if name not in ("thread", "mock", "process", "subprocess"):
            raise UsageError(f"unknown executor {name!r}")
    config = BenchConfig(
        scenarios=scenarios,
        dsn=args.dsn,
        repeat=args.repeat,
        e2e_workers=args.workers,
        executors=executors,
        autovacuum=args.autovacuum,
    )
    if args.scale != 1.0:
        config = config.scaled(args.scale)
    given: dict[str, Any] = {}
    for flag, field in (
        ("raw_tasks", "raw_count"),
        ("enqueue_tasks", "enqueue_count"),
        ("burst_tasks", "burst_count"),
        ("steady_producers", "steady_producers"),
        ("steady_concurrency", "steady_concurrency"),
    ):
        value = getattr(args, flag)
        if value is not None:
            if value < 1:
                raise UsageError(f"--{flag.replace('_', '-')} must be at least 1")
            given[field] = value
    if args.burst_concurrency is not None:
        given["burst_concurrency"] = _positive_ints(args.burst_concurrency, "--burst-concurrency")
    if args.steady_rate is not None:
        if args.steady_rate <= 0:
            raise UsageError("--steady-rate must be positive")
        given["steady_rate"] = args.steady_rate
    if args.steady_duration is not None:
        seconds = parse_duration(args.steady_duration, key="--steady-duration")
        if seconds <= 0:
            raise UsageError("--steady-duration must be positive")
        given["steady_seconds"] = seconds
    return dataclasses.replace(config, **given)
