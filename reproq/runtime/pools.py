"""A config pool as a worker: the :class:`~reproq.engine.worker.WorkerOptions` it runs with.

``reproq up`` runs one worker per pool and ``reproq worker`` runs one pool; both build the
worker's options here from the same :class:`~reproq.config.Settings`, so a setting means
the same thing whichever command reads it.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping
from typing import Any

from reproq.config import (
    ExecutorKind,
    MockOptions,
    PoolSettings,
    ProcessOptions,
    Settings,
    SubprocessOptions,
)
from reproq.db import DSN_ENV_VARS
from reproq.engine.worker import WorkerOptions
from reproq.errors import ConfigError

__all__ = [
    "check_pools",
    "describe_executor",
    "executor_options",
    "pool_worker_id",
    "task_env",
    "worker_options",
]


def task_env(dsn: str) -> dict[str, str]:
    """What a task's child process needs in its environment to enqueue more work into the
    worker's own database (its default client reads it)."""
    return {DSN_ENV_VARS[0]: dsn} if dsn else {}


def worker_options(
    settings: Settings, pool: PoolSettings, *, dsn: str, worker_id: str | None = None
) -> WorkerOptions:
    """The options of *pool*'s worker on the database at *dsn*.

    *worker_id* replaces the pool's own (:func:`pool_worker_id`).
    """
    worker = settings.worker
    return WorkerOptions(
        worker_id=worker_id or pool_worker_id(settings, pool),
        queues=pool.queues,
        concurrency=pool.concurrency,
        connections=pool.connections,
        executor=str(pool.executor),
        executor_options=executor_options(settings, pool, env=task_env(dsn)),
        allowed_task_modules=worker.allowed_task_modules,
        lease_seconds=worker.lease_seconds,
        heartbeat_seconds=worker.heartbeat_seconds,
        # 0 disables the reclaimer in the file; the worker wants a positive interval.
        reclaim_interval_seconds=worker.reclaim_interval_seconds or math.inf,
        priority_aging_factor=worker.priority_aging_factor,
        shutdown_timeout=worker.shutdown_timeout,
        logs_dir=str(worker.logs_dir) if worker.logs_dir is not None else None,
        max_payload_bytes=worker.max_payload_bytes,
        max_output_bytes=worker.max_output_bytes,
        poll_interval=worker.poll_interval,
        max_timeout_seconds=pool.timeout_seconds,
    )


def executor_options(
    settings: Settings, pool: PoolSettings, *, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Keyword arguments of *pool*'s executor class, from its options; *env* goes into the
    environment of the task processes of the process and subprocess executors."""
    options = pool.options
    worker = settings.worker
    if isinstance(options, ProcessOptions):
        return {
            "processes": pool.concurrency,
            # 0 means "never" / "no limit" in the file; the executor spells that None.
            "max_tasks_per_child": options.max_tasks_per_child or None,
            "max_memory_mb": options.max_memory_mb or None,
            "max_payload_bytes": worker.max_payload_bytes,
            "max_output_bytes": worker.max_output_bytes,
            "env": dict(env or {}),
        }
    if isinstance(options, SubprocessOptions):
        return {
            "python": options.python,
            "module": options.module,
            "payload_mode": str(options.payload_mode),
            "max_payload_bytes": worker.max_payload_bytes,
            "max_output_bytes": worker.max_output_bytes,
            "env": dict(env or {}),
        }
    if isinstance(options, MockOptions):
        mock: dict[str, Any] = {"duration": options.duration, "failure_rate": options.failure_rate}
        if options.seed is not None:
            mock["seed"] = options.seed
        return mock
    if pool.executor == ExecutorKind.THREAD:
        return {"max_output_bytes": worker.max_output_bytes}
    return {}


def describe_executor(settings: Settings, pool: PoolSettings) -> str:
    """The executor of *pool* as the start-up line shows it, with why it was chosen."""
    options = pool.options
    detail = ""
    if isinstance(options, SubprocessOptions):
        detail = f" ({options.python} -m {options.module}, payload {options.payload_mode})"
    source = settings.source_of(f"pools.{pool.name}.executor")
    why = "" if source == "default" else f"; chosen by {source.partition(':')[2] or source}"
    if source == "env:DJANGO_SETTINGS_MODULE":
        why = "; chosen because DJANGO_SETTINGS_MODULE is set and reproq_django is importable"
    return f"{pool.executor}{detail}{why}"


def pool_worker_id(settings: Settings, pool: PoolSettings) -> str:
    """The worker id of *pool*'s worker: ``<worker_id or hostname-pid>-<pool name>``."""
    base = settings.worker.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    return f"{base}-{pool.name}"


def check_pools(settings: Settings) -> None:
    """Check each pool's worker options before anything starts (a ConfigError, exit 2)."""
    file = str(settings.source_file) if settings.source_file is not None else None
    for pool in settings.pools:
        try:
            worker_options(settings, pool, dsn="").validate()
        except ConfigError as exc:
            key = exc.key or ""
            pool_field = key in ("queues", "concurrency", "connections")
            section = f"pools.{pool.name}" if pool_field else "worker"
            raise ConfigError(exc.message, file=file, key=f"{section}.{key}") from exc
