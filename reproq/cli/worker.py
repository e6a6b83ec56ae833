"""``reproq worker``: execute task runs (seed-compatible flags).

SIGTERM or SIGINT stops claiming and lets running tasks finish for up to
``--shutdown-timeout``, then gives their leases back; a second signal gives them back at
once and exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from types import FrameType
from typing import Any

from reproq.cli._common import add_dsn_arguments, dsn_from_args
from reproq.durations import parse_duration
from reproq.errors import UsageError

__all__ = ["ALLOWED_ENV", "executor_options", "handle", "register"]

ALLOWED_ENV = "REPROQ_ALLOWED_TASK_MODULES"
"""Environment fallback for ``--allowed-task-modules``."""

log = logging.getLogger("reproq.cli.worker")


def _duration(text: str) -> float:
    """Seconds from ``30``, ``30s``, ``5m`` … (argparse ``type=``)."""
    return parse_duration(text)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``worker`` command."""
    from reproq.executors import EXECUTOR_NAMES

    parser = subparsers.add_parser(
        "worker",
        help="execute queued task runs",
        description=(
            "Claim READY task runs from the given queues and execute them. "
            "Stop with SIGTERM/SIGINT (graceful); a second signal forces."
        ),
    )
    add_dsn_arguments(parser)
    parser.add_argument("--concurrency", type=int, default=10, help="slots (default: 10)")
    parser.add_argument(
        "--worker-id", help="id in the registry and in leases (default: $WORKER_ID, else host-pid)"
    )
    parser.add_argument(
        "--queues", default="default", help="comma-separated queues to serve (default: default)"
    )
    parser.add_argument(
        "--allowed-task-modules",
        metavar="PREFIXES",
        help="comma-separated task module prefixes this worker may import, e.g. myapp.tasks. "
        f"('*' allows any; default: ${ALLOWED_ENV}; required)",
    )
    parser.add_argument(
        "--executor", choices=EXECUTOR_NAMES, default="thread", help="default: thread"
    )
    parser.add_argument("--lease-seconds", type=_duration, default=300.0, metavar="DURATION")
    parser.add_argument("--heartbeat-seconds", type=_duration, default=60.0, metavar="DURATION")
    parser.add_argument(
        "--reclaim-interval-seconds", type=_duration, default=60.0, metavar="DURATION"
    )
    parser.add_argument(
        "--priority-aging-factor",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds of waiting worth one priority point; 0 disables aging (default: 60)",
    )
    parser.add_argument("--shutdown-timeout", type=_duration, default=30.0, metavar="DURATION")
    parser.add_argument("--poll-interval", type=_duration, default=0.5, metavar="DURATION")
    parser.add_argument("--logs-dir", help="write captured task output here (files mode 0600)")
    parser.add_argument("--max-payload-bytes", type=int, default=1024 * 1024)
    parser.add_argument("--max-output-bytes", type=int, default=1024 * 1024)
    mock = parser.add_argument_group("mock executor")
    mock.add_argument("--mock-duration", default="0", help="seconds, or a range like 0.1-0.5")
    mock.add_argument("--mock-failure-rate", type=float, default=0.0)
    mock.add_argument("--mock-seed", type=int)
    child = parser.add_argument_group("process and subprocess executors")
    child.add_argument("--python", help="interpreter for the subprocess executor")
    child.add_argument(
        "--executor-module",
        help="module run as `python -m MODULE` by the subprocess executor "
        "(default: reproq.executor)",
    )
    child.add_argument(
        "--max-tasks-per-child", type=int, help="recycle process-executor children after N tasks"
    )
    parser.set_defaults(func=handle)


def executor_options(args: argparse.Namespace) -> dict[str, Any]:
    """The executor's constructor options implied by the flags."""
    name = args.executor
    if name == "mock":
        options: dict[str, Any] = {
            "duration": args.mock_duration,
            "failure_rate": args.mock_failure_rate,
        }
        if args.mock_seed is not None:
            options["seed"] = args.mock_seed
        return options
    if name == "process":
        options = {
            "processes": args.concurrency,
            "max_payload_bytes": args.max_payload_bytes,
            "max_output_bytes": args.max_output_bytes,
        }
        if args.max_tasks_per_child is not None:
            options["max_tasks_per_child"] = args.max_tasks_per_child
        return options
    if name == "subprocess":
        options = {
            "max_payload_bytes": args.max_payload_bytes,
            "max_output_bytes": args.max_output_bytes,
        }
        if args.python:
            options["python"] = args.python
        if args.executor_module:
            options["module"] = args.executor_module
        return options
    return {}


def handle(args: argparse.Namespace) -> int:
    """Run ``reproq worker`` until signalled."""
    from reproq.worker import Worker, WorkerOptions, default_worker_id

    allowed = _csv(args.allowed_task_modules or os.environ.get(ALLOWED_ENV, ""))
    if not allowed:
        raise UsageError(
            "--allowed-task-modules is required: the task module prefixes this worker may "
            f"import, e.g. myapp.tasks. ('*' allows any; or set ${ALLOWED_ENV})"
        )
    queues = _csv(args.queues)
    if not queues:
        raise UsageError("--queues must name at least one queue")
    dsn = dsn_from_args(args)
    options = WorkerOptions(
        queues=tuple(queues),
        concurrency=args.concurrency,
        worker_id=args.worker_id or default_worker_id(),
        executor=args.executor,
        executor_options=executor_options(args),
        allowed_task_modules=tuple(allowed),
        lease_seconds=args.lease_seconds,
        heartbeat_seconds=args.heartbeat_seconds,
        reclaim_interval_seconds=args.reclaim_interval_seconds,
        priority_aging_factor=args.priority_aging_factor,
        shutdown_timeout=args.shutdown_timeout,
        poll_interval=args.poll_interval,
        logs_dir=args.logs_dir,
        max_payload_bytes=args.max_payload_bytes,
        max_output_bytes=args.max_output_bytes,
    )
    # Tasks that enqueue more work through the default client reach this database.
    os.environ["REPROQ_DSN"] = dsn
    worker = Worker(dsn, options)

    def _stop(signum: int, frame: FrameType | None) -> None:
        force = worker.stopping
        log.info("%s: %s", signal.Signals(signum).name, "forcing stop" if force else "stopping")
        worker.request_stop(force=force)

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        # The worker runs in its own thread so that signal handlers, which Python runs in
        # the main thread, never interrupt the worker's own locking.
        worker.start()
        while not worker.join(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if worker.error is not None:
        raise worker.error
    return 0
