"""``reproq worker``: execute task runs (seed-compatible flags).

SIGTERM or SIGINT stops claiming and lets running tasks finish for up to
``--shutdown-timeout``, then gives their leases back; a second signal gives them back at
once and exits, within seconds whatever the worker is doing.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from reproq.cli._common import add_dsn_arguments, dsn_from_args
from reproq.config import resolve_config_path
from reproq.durations import parse_duration
from reproq.errors import UsageError

if TYPE_CHECKING:
    from reproq.engine.worker import Worker, WorkerOptions

__all__ = ["ALLOWED_ENV", "executor_options", "handle", "options_from_args", "register"]

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
    parser.add_argument("--concurrency", type=int, help="slots (default: 10)")
    parser.add_argument(
        "--connections",
        type=int,
        metavar="N",
        help="claim loops, each on its own database connection, sharing the slots; for many "
        "short tasks on a server with cores to spare (default: 1)",
    )
    parser.add_argument(
        "--worker-id", help="id in the registry and in leases (default: $WORKER_ID, else host-pid)"
    )
    parser.add_argument("--queues", help="comma-separated queues to serve (default: default)")
    parser.add_argument(
        "--pool",
        help="with --config: the [[pools]] entry to run (default: the first); flags override it",
    )
    parser.add_argument(
        "--allowed-task-modules",
        metavar="PREFIXES",
        help="comma-separated task module prefixes this worker may import, e.g. myapp.tasks. "
        f"('*' allows any; default: ${ALLOWED_ENV}; required)",
    )
    parser.add_argument("--executor", choices=EXECUTOR_NAMES, help="default: thread")
    parser.add_argument("--lease-seconds", type=_duration, metavar="DURATION", help="default: 300")
    parser.add_argument(
        "--heartbeat-seconds", type=_duration, metavar="DURATION", help="default: 60"
    )
    parser.add_argument(
        "--reclaim-interval-seconds", type=_duration, metavar="DURATION", help="default: 60"
    )
    parser.add_argument(
        "--priority-aging-factor",
        type=float,
        metavar="SECONDS",
        help="seconds of waiting worth one priority point; 0 disables aging (default: 60)",
    )
    parser.add_argument(
        "--shutdown-timeout", type=_duration, metavar="DURATION", help="default: 30s"
    )
    parser.add_argument("--poll-interval", type=_duration, metavar="DURATION", help="default: 0.5s")
    parser.add_argument("--logs-dir", help="write captured task output here (files mode 0600)")
    parser.add_argument("--max-payload-bytes", type=int, help="default: 1 MiB")
    parser.add_argument("--max-output-bytes", type=int, help="default: 1 MiB")
    mock = parser.add_argument_group("mock executor")
    mock.add_argument("--mock-duration", default="0", help="seconds, or a range like 0.1-0.5")
    mock.add_argument("--mock-failure-rate", type=float, default=0.0)
    mock.add_argument("--mock-seed", type=int)
    child = parser.add_argument_group("process and subprocess executors")
    child.add_argument("--python", help="interpreter for the subprocess executor")
    child.add_argument(
        "--executor-module",
        help="module run as `python -m MODULE` by the subprocess executor "
        "(default: reproq.executors.contract)",
    )
    child.add_argument(
        "--max-tasks-per-child", type=int, help="recycle process-executor children after N tasks"
    )
    parser.set_defaults(func=handle)


def executor_options(args: argparse.Namespace, options: WorkerOptions) -> dict[str, Any]:
    """The executor's constructor options implied by the flags and the worker options."""
    name = options.executor
    if name == "mock":
        mock: dict[str, Any] = {
            "duration": args.mock_duration,
            "failure_rate": args.mock_failure_rate,
        }
        if args.mock_seed is not None:
            mock["seed"] = args.mock_seed
        return mock
    chosen: dict[str, Any] = dict(options.executor_options)
    if name in ("process", "subprocess"):
        chosen["max_payload_bytes"] = options.max_payload_bytes
    if name in ("thread", "process", "subprocess"):
        chosen["max_output_bytes"] = options.max_output_bytes
    if name == "process":
        chosen.setdefault("processes", options.concurrency)
        if args.max_tasks_per_child is not None:
            chosen["max_tasks_per_child"] = args.max_tasks_per_child
    if name == "subprocess":
        if args.python:
            chosen["python"] = args.python
        if args.executor_module:
            chosen["module"] = args.executor_module
    return chosen


# Flag destination -> WorkerOptions field, for flags that override a config file.
_FLAG_FIELDS = {
    "concurrency": "concurrency",
    "connections": "connections",
    "executor": "executor",
    "lease_seconds": "lease_seconds",
    "heartbeat_seconds": "heartbeat_seconds",
    "reclaim_interval_seconds": "reclaim_interval_seconds",
    "priority_aging_factor": "priority_aging_factor",
    "shutdown_timeout": "shutdown_timeout",
    "poll_interval": "poll_interval",
    "logs_dir": "logs_dir",
    "max_payload_bytes": "max_payload_bytes",
    "max_output_bytes": "max_output_bytes",
}


def _options_from_config(path: Path, args: argparse.Namespace) -> WorkerOptions:
    """The worker options of one pool of a config file (defaults < file < env)."""
    from reproq.config import load_settings
    from reproq.runtime.supervisor import worker_options

    settings = load_settings(path)
    if args.pool:
        pool = next((p for p in settings.pools if p.name == args.pool), None)
        if pool is None:
            names = ", ".join(p.name for p in settings.pools)
            raise UsageError(f"--pool {args.pool}: {path} has no such pool (pools: {names})")
    else:
        pool = settings.pools[0]
    return worker_options(settings, pool)


def options_from_args(args: argparse.Namespace) -> WorkerOptions:
    """The worker's options: defaults < ``--config`` pool (and its env) < flags."""
    from reproq.engine.worker import WorkerOptions, default_worker_id

    config = resolve_config_path(getattr(args, "config", None))
    if config is not None:
        options = _options_from_config(config, args)
    elif args.pool:
        raise UsageError("--pool needs --config FILE")
    else:
        options = WorkerOptions(allowed_task_modules=())
    # Flags win over the file (and over the built-in defaults).
    changes: dict[str, Any] = {
        field: getattr(args, dest)
        for dest, field in _FLAG_FIELDS.items()
        if getattr(args, dest) is not None
    }
    if args.queues is not None:
        changes["queues"] = tuple(_csv(args.queues))
    if args.worker_id:
        changes["worker_id"] = args.worker_id
    elif config is None:
        changes["worker_id"] = default_worker_id()
    flag_allowed = args.allowed_task_modules or (
        None if options.allowed_task_modules else os.environ.get(ALLOWED_ENV)
    )
    if flag_allowed:
        changes["allowed_task_modules"] = tuple(_csv(flag_allowed))
    if "executor" in changes and changes["executor"] != options.executor:
        changes["executor_options"] = {}  # the file's options belong to another executor
    options = replace(options, **changes)
    options = replace(options, executor_options=executor_options(args, options))
    if not options.allowed_task_modules:
        raise UsageError(
            "--allowed-task-modules is required: the task module prefixes this worker may "
            f"import, e.g. myapp.tasks. ('*' allows any; or set ${ALLOWED_ENV})"
        )
    if not options.queues:
        raise UsageError("--queues must name at least one queue")
    return options


def handle(args: argparse.Namespace) -> int:
    """Run ``reproq worker`` until signalled."""
    from reproq.engine.worker import Worker

    options = options_from_args(args)
    dsn = dsn_from_args(args)
    # Tasks that enqueue more work through the default client reach this database.
    os.environ["REPROQ_DSN"] = dsn
    worker = Worker(dsn, options)
    _run_until_signalled(worker)
    if worker.error is not None:
        raise worker.error
    return 0


def _run_until_signalled(worker: Worker) -> None:
    """Run the worker until SIGTERM/SIGINT have stopped it.

    The first signal drains; the second gives the leases back at once and, should the
    worker not manage within :data:`~reproq.runtime.forced_exit.FORCED_EXIT_SECONDS` (its
    control thread stuck on a frozen database, say), ends the process regardless.
    """
    from reproq.runtime.forced_exit import FORCED_EXIT_SECONDS, exit_later

    forced: list[threading.Event] = []

    def _stop(signum: int, frame: FrameType | None) -> None:
        force = worker.stopping
        log.info("%s: %s", signal.Signals(signum).name, "forcing stop" if force else "stopping")
        worker.request_stop(force=force)
        if force and not forced:
            forced.append(exit_later(FORCED_EXIT_SECONDS, what=f"worker {worker.worker_id}"))

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        # The worker runs in its own thread so that signal handlers, which Python runs in
        # the main thread, never interrupt the worker's own locking.
        worker.start()
        while not worker.join(0.5):
            pass
    finally:
        for done in forced:
            done.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
