"""``reproq worker``: execute task runs (the seed's and the Go worker's flags).

The settings come from the one loader: defaults < the config file (``--config``,
``$REPROQ_CONFIG`` or ``reproq.yaml``/``reproq.toml`` in the working directory) < the
environment (``REPROQ_*`` and the Go worker's variables) < these flags. The worker runs
one pool of the file: ``--pool NAME``, else the first (or the only one of a file without
``[[pools]]``). With a metrics address it also serves ``/metrics`` and ``/healthz``.
Like ``reproq up``, it first applies pending schema migrations (``--no-migrate``: refuse a
schema that is behind instead), so it runs on a database that only reproq-django's
``migrate`` has prepared.

SIGTERM or SIGINT stops claiming and lets running tasks finish for up to
``--shutdown-timeout``, then gives their leases back; a second signal gives them back at
once and exits, within seconds whatever the worker is doing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import socket
import threading
from types import FrameType
from typing import TYPE_CHECKING

from reproq.cli._common import (
    add_dsn_arguments,
    add_migrate_argument,
    command_settings,
    database_dsn,
    prepare_database,
)
from reproq.config import Flag, PoolSettings, Settings
from reproq.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from reproq.engine.worker import Worker, WorkerOptions
    from reproq.runtime.endpoint import Endpoint

__all__ = ["handle", "options_from_args", "register", "worker_overrides", "worker_settings"]

log = logging.getLogger("reproq.cli.worker")

# Flags of the chosen pool: flag destination -> (pool field or option, shorthand key).
_POOL_FLAGS = {
    "concurrency": ("concurrency", "concurrency"),
    "connections": ("connections", "connections"),
    "queues": ("queues", "queues"),
    "executor": ("executor", "executor"),
    "python": ("options.python", "python_bin"),
    "executor_module": ("options.module", "executor_module"),
    "payload_mode": ("options.payload_mode", "payload_mode"),
    "max_tasks_per_child": ("options.max_tasks_per_child", "max_tasks_per_child"),
    "mock_duration": ("options.duration", "mock_duration"),
    "mock_failure_rate": ("options.failure_rate", "mock_failure_rate"),
    "mock_seed": ("options.seed", "mock_seed"),
}

# Every other flag: flag destination -> dotted setting.
_SETTING_FLAGS = {
    "worker_id": "worker.worker_id",
    "process_role": "worker.process_role",
    "allowed_task_modules": "worker.allowed_task_modules",
    "lease_seconds": "worker.lease_seconds",
    "heartbeat_seconds": "worker.heartbeat_seconds",
    "reclaim_interval_seconds": "worker.reclaim_interval_seconds",
    "priority_aging_factor": "worker.priority_aging_factor",
    "shutdown_timeout": "worker.shutdown_timeout",
    "poll_interval": "worker.poll_interval",
    "logs_dir": "worker.logs_dir",
    "max_payload_bytes": "worker.max_payload_bytes",
    "max_output_bytes": "worker.max_output_bytes",
    "metrics_port": "metrics.port",
    "metrics_addr": "metrics.addr",
    "metrics_auth_token": "metrics.auth_token",
    "metrics_allow_cidrs": "metrics.allowed_cidrs",
    "metrics_tls_cert": "metrics.tls_cert",
    "metrics_tls_key": "metrics.tls_key",
    "metrics_tls_client_ca": "metrics.tls_client_ca",
    "metrics_auth_limit": "metrics.auth_limit",
    "metrics_auth_window": "metrics.auth_window",
    "metrics_auth_max_entries": "metrics.auth_max_entries",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``worker`` command."""
    from reproq.executors import EXECUTOR_NAMES

    parser = subparsers.add_parser(
        "worker",
        help="execute queued task runs",
        description=(
            "Claim READY task runs from the given queues and execute them. Flags override "
            "the config file and the environment (docs/configuration.md). Stop with "
            "SIGTERM/SIGINT (graceful); a second signal forces."
        ),
    )
    add_dsn_arguments(parser)
    add = parser.add_argument
    add("--concurrency", metavar="N", help="slots (default: 10)")
    add(
        "--connections",
        metavar="N",
        help="claim loops, each on its own database connection, sharing the slots; for many "
        "short tasks on a server with cores to spare (default: 1)",
    )
    add("--worker-id", help="id in the registry and in leases (default: $WORKER_ID, else host-pid)")
    add("--queues", help="comma-separated queues to serve (default: default)")
    add("--pool", help="the config's [[pools]] entry to run (default: the first)")
    add(
        "--allowed-task-modules",
        metavar="PREFIXES",
        help="comma-separated task module prefixes this worker may import, e.g. myapp.tasks. "
        "('*' allows any; default: $REPROQ_ALLOWED_TASK_MODULES or $ALLOWED_TASK_MODULES; "
        "required)",
    )
    add("--executor", choices=EXECUTOR_NAMES, help="default: thread, see the docs for Django")
    add("--lease-seconds", metavar="DURATION", help="default: 300")
    add("--heartbeat-seconds", metavar="DURATION", help="default: 60")
    add("--reclaim-interval-seconds", metavar="DURATION", help="default: 60; 0 disables")
    add(
        "--priority-aging-factor",
        metavar="SECONDS",
        help="seconds of waiting worth one priority point; 0 disables aging (default: 60)",
    )
    add("--shutdown-timeout", metavar="DURATION", help="default: 30s")
    add("--poll-interval", metavar="DURATION", help="default: 1s")
    add("--logs-dir", help="write captured task output here (files mode 0600)")
    add("--max-payload-bytes", metavar="N", help="default: 1 MiB")
    add("--max-output-bytes", metavar="N", help="default: 1 MiB")
    add("--process-role", help="accepted for the Go worker's command line; reproq ignores it")
    add_migrate_argument(parser)
    child = parser.add_argument_group("process and subprocess executors")
    child.add_argument("--python", help="interpreter for the subprocess executor")
    child.add_argument(
        "--executor-module",
        help="module run as `python -m MODULE` by the subprocess executor "
        "(default: reproq_django.executor)",
    )
    child.add_argument(
        "--payload-mode",
        choices=("stdin", "file", "inline"),
        help="how the subprocess executor hands the task to its child (implies it)",
    )
    child.add_argument("--max-tasks-per-child", metavar="N", help="recycle process children")
    mock = parser.add_argument_group("mock executor")
    mock.add_argument("--mock-duration", help="seconds, or a range like 0.1-0.5")
    mock.add_argument("--mock-failure-rate", metavar="P")
    mock.add_argument("--mock-seed", metavar="N")
    metrics = parser.add_argument_group("metrics and health endpoint (the Go worker's flags)")
    metrics.add_argument("--metrics-port", metavar="PORT", help="serve on all interfaces")
    metrics.add_argument("--metrics-addr", metavar="HOST:PORT", help="wins over --metrics-port")
    metrics.add_argument("--metrics-auth-token", metavar="TOKEN")
    metrics.add_argument("--metrics-allow-cidrs", metavar="CIDRS")
    metrics.add_argument("--metrics-tls-cert", metavar="FILE")
    metrics.add_argument("--metrics-tls-key", metavar="FILE")
    metrics.add_argument("--metrics-tls-client-ca", metavar="FILE")
    metrics.add_argument("--metrics-auth-limit", metavar="N")
    metrics.add_argument("--metrics-auth-window", metavar="DURATION")
    metrics.add_argument("--metrics-auth-max-entries", metavar="N")
    parser.set_defaults(func=handle)


def worker_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The flags as the loader's overrides (dotted keys; unset flags are None)."""
    overrides: dict[str, object] = {}
    for dest, (pool_key, shorthand) in _POOL_FLAGS.items():
        key = f"pools.{args.pool}.{pool_key}" if args.pool else f"worker.{shorthand}"
        overrides[key] = Flag(getattr(args, dest), _flag_name(dest))
    for dest, key in _SETTING_FLAGS.items():
        overrides[key] = Flag(getattr(args, dest), _flag_name(dest))
    return overrides


def _flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def worker_settings(args: argparse.Namespace) -> tuple[Settings, PoolSettings]:
    """The settings of ``reproq worker`` and the pool it runs."""
    settings = command_settings(args, worker_overrides(args))
    if not args.pool:
        return settings, settings.pools[0]
    for pool in settings.pools:
        if pool.name == args.pool:
            return settings, pool
    names = ", ".join(p.name for p in settings.pools)
    raise UsageError(f"--pool {args.pool}: the config has no such pool (pools: {names})")


def _worker_id(settings: Settings, pool: PoolSettings) -> str | None:
    """The id of this worker; None for a pool of the file's ``[[pools]]``, whose id is
    ``<worker_id>-<pool>`` as under ``reproq up`` (unless ``--worker-id`` names it)."""
    if settings.source_of("worker.worker_id").startswith("flag:"):
        return settings.worker.worker_id
    if settings.source_of(f"pools.{pool.name}.name").startswith("file:"):
        return None
    return settings.worker.worker_id or f"{socket.gethostname()}-{os.getpid()}"


def options_from_args(args: argparse.Namespace, dsn: str = "") -> WorkerOptions:
    """The worker's options: defaults < config pool < environment < flags."""
    settings, pool = worker_settings(args)
    return _options(settings, pool, dsn)


def _options(settings: Settings, pool: PoolSettings, dsn: str) -> WorkerOptions:
    """*pool*'s checked worker options on the database at *dsn*."""
    from reproq.runtime.pools import worker_options

    options = worker_options(settings, pool, dsn=dsn, worker_id=_worker_id(settings, pool))
    try:
        options.validate()
    except ConfigError as exc:
        if exc.key == "allowed_task_modules":
            raise UsageError(
                "--allowed-task-modules is required: the task module prefixes this worker may "
                "import, e.g. myapp.tasks. ('*' allows any; or set $ALLOWED_TASK_MODULES)"
            ) from exc
        raise ConfigError(exc.message, key=f"worker.{exc.key}") from exc
    return options


def handle(args: argparse.Namespace) -> int:
    """Run ``reproq worker`` until signalled."""
    from reproq.engine.worker import Worker
    from reproq.producer.client import configure
    from reproq.runtime.pools import describe_executor

    settings, pool = worker_settings(args)
    _options(settings, pool, "")  # a bad setting is reported before any database is sought
    dsn = database_dsn(settings)
    options = _options(settings, pool, dsn)
    for warning in settings.warnings:
        log.warning("config: %s", warning)
    log.info("executor: %s", describe_executor(settings, pool))
    prepare_database(dsn, args, application_name="reproq-worker")
    # Tasks that enqueue more work through the default client reach this database.
    configure(dsn)
    endpoint = _endpoint(settings, dsn)
    worker = Worker(dsn, options, metrics=endpoint.sink if endpoint is not None else None)
    try:
        if endpoint is not None:
            endpoint.watch_worker(worker)
            endpoint.start()  # before the worker starts: a taken port fails the start
            log.info("metrics: %s", endpoint.server.describe())
        _run_until_signalled(worker)
    finally:
        if endpoint is not None:
            endpoint.close()
    if worker.error is not None:
        raise worker.error
    return 0


def _endpoint(settings: Settings, dsn: str) -> Endpoint | None:
    """``/metrics``, ``/healthz`` and ``/events`` of this worker, when the settings ask."""
    if not settings.metrics.enabled:
        return None
    from reproq.runtime.endpoint import Endpoint

    stale = max(180.0, 3 * settings.worker.heartbeat_seconds)
    return Endpoint(settings.metrics, dsn=dsn, stale_after=dt.timedelta(seconds=stale))


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
