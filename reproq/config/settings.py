"""reproq's settings: the frozen, typed objects one process runs on.

Values are layered, later layers winning: built-in defaults < the config file (TOML or
YAML) < environment variables (:data:`ENV_VARS`, and :data:`reproq.db.DSN_ENV_VARS` for
the database) < command-line flags. :mod:`reproq.config.load` builds them; the file
format is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import platformdirs

from reproq.engine.bounds import DEFAULT_CONCURRENCY
from reproq.schedule.cron import MisfirePolicy, format_cron_expr

__all__ = [
    "ENV_VARS",
    "BeatSettings",
    "DatabaseSettings",
    "ExecutorKind",
    "LoggingSettings",
    "MetricsSettings",
    "MisfirePolicy",
    "MockOptions",
    "PayloadMode",
    "PoolOptions",
    "PoolSettings",
    "ProcessOptions",
    "QueueSettings",
    "RateLimitSettings",
    "ScheduleSettings",
    "Settings",
    "SubprocessOptions",
    "ThreadOptions",
    "WorkerSettings",
    "default_data_dir",
]

MIB = 1024 * 1024


def default_data_dir() -> Path:
    """Where the embedded PostgreSQL keeps its data unless configured otherwise.

    PostgreSQL refuses to run as root, so as root the cluster runs as an unprivileged
    account that cannot enter root's home: then the data lives under /var/lib instead.
    """
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/reproq/postgres")
    return platformdirs.user_data_path("reproq") / "postgres"


class ExecutorKind(StrEnum):
    """How a pool runs a task (see DESIGN.md §5)."""

    THREAD = "thread"
    PROCESS = "process"
    SUBPROCESS = "subprocess"
    MOCK = "mock"


class PayloadMode(StrEnum):
    """How the ``subprocess`` executor hands the spec to the child (executor contract)."""

    STDIN = "stdin"
    FILE = "file"
    INLINE = "inline"


@dataclass(frozen=True, kw_only=True, slots=True)
class DatabaseSettings:
    """``[database]``: where the queue lives."""

    dsn: str | None = field(default=None, repr=False)
    """PostgreSQL DSN; None means the embedded PostgreSQL in :attr:`embedded_data_dir`."""
    pool_size: int = 10
    """Connections per process for the pools, beat and metrics together."""
    embedded_data_dir: Path = field(default_factory=default_data_dir)
    """Data directory of the embedded PostgreSQL (used only when :attr:`dsn` is None)."""
    embedded_port: int | None = None
    """TCP port of the embedded PostgreSQL; None picks a free one."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerSettings:
    """``[worker]``: settings shared by every pool of this process. Durations are seconds."""

    worker_id: str | None = None
    """Base worker id (pools append their name); None means ``<hostname>-<pid>``."""
    lease_seconds: float = 300.0
    heartbeat_seconds: float = 60.0
    reclaim_interval_seconds: float = 60.0
    """How often expired leases are reclaimed; 0 disables the reclaimer."""
    priority_aging_factor: float = 60.0
    """Seconds of waiting worth one priority point; 0 disables aging."""
    allowed_task_modules: tuple[str, ...] = ()
    """Task-path prefixes allowed to run (``"myapp.tasks."``); ``"*"`` allows every path."""
    shutdown_timeout: float = 30.0
    logs_dir: Path | None = None
    """Where task stdout/stderr logs are written; None keeps them only in the database."""
    max_payload_bytes: int = MIB
    max_output_bytes: int = MIB
    poll_interval: float = 1.0
    """Idle polling period, the fallback when no LISTEN/NOTIFY wake-up arrives."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ThreadOptions:
    """Options of the ``thread`` executor (it has none)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ProcessOptions:
    """Options of the ``process`` executor."""

    max_tasks_per_child: int = 0
    """Replace a child process after this many tasks; 0 never replaces it."""
    max_memory_mb: int = 0
    """Replace a child whose resident memory exceeds this after a task; 0 means no limit."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SubprocessOptions:
    """Options of the ``subprocess`` executor (``python -m MODULE`` per task)."""

    python: str = sys.executable
    module: str = "reproq_django.executor"
    payload_mode: PayloadMode = PayloadMode.STDIN


@dataclass(frozen=True, kw_only=True, slots=True)
class MockOptions:
    """Options of the ``mock`` executor: simulated work for benchmarks and torture."""

    duration: float | tuple[float, float] = 0.0
    """Seconds each simulated task takes, or a ``(low, high)`` range drawn uniformly."""
    failure_rate: float = 0.0
    """Probability (0..1) that a simulated task fails."""
    seed: int | None = None
    """Makes the simulated durations and failures repeatable."""


PoolOptions = ThreadOptions | ProcessOptions | SubprocessOptions | MockOptions
"""The options of a pool; the class matches :attr:`PoolSettings.executor`."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PoolSettings:
    """One ``[[pools]]`` entry: a set of slots serving some queues with one executor."""

    name: str
    queues: tuple[str, ...]
    concurrency: int = DEFAULT_CONCURRENCY
    connections: int = 1
    """Claim loops, each on its own database connection, sharing the slots."""
    executor: ExecutorKind = ExecutorKind.THREAD
    timeout_seconds: float | None = None
    """Timeout for attempts whose spec sets none; None means no pool-level timeout."""
    options: PoolOptions = field(default_factory=ThreadOptions)


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueSettings:
    """One ``[queues.NAME]`` table: queue controls synced to the database by ``reproq up``."""

    name: str
    paused: bool = False
    reason: str | None = None
    """Why the queue is paused (shown by ``status`` and the TUI)."""
    rate: float | None = None
    """Tasks per second allowed from this queue (the ``queue:NAME`` limit); None: not set."""
    burst: int | None = None
    concurrency: int = 0
    """At most this many RUNNING tasks of this queue across all workers; 0 means no limit."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimitSettings:
    """A token bucket for the ``rate_limits`` table; rate 0 means no limit."""

    key: str
    """``global``, ``task:<task_path>`` or ``queue:<queue_name>``."""
    rate: float
    """Tokens (claims) per second."""
    burst: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleSettings:
    """One ``[[schedules]]`` entry, synced into ``periodic_tasks`` by ``reproq up``."""

    name: str
    cron: str
    """Five cron fields, without any ``CRON_TZ=`` prefix (see :attr:`cron_expr`)."""
    task: str
    timezone: str = "UTC"
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 3
    enabled: bool = True
    misfire: MisfirePolicy = MisfirePolicy.LATEST
    misfire_limit: int = 100
    """Most catch-up runs enqueued at once under ``misfire = "all"``."""
    concurrency_key: str | None = None
    concurrency_limit: int = 0

    @property
    def cron_expr(self) -> str:
        """The expression as stored in ``periodic_tasks.cron_expr`` (``CRON_TZ=`` when not UTC)."""
        return format_cron_expr(self.cron, self.timezone)

    def payload(self) -> dict[str, Any]:
        """``periodic_tasks.payload_json``: fresh ``{"args": [...], "kwargs": {...}}``."""
        return {"args": _thaw(self.args), "kwargs": _thaw(self.kwargs)}


@dataclass(frozen=True, kw_only=True, slots=True)
class BeatSettings:
    """``[beat]``: the scheduler that enqueues ``periodic_tasks`` when they are due."""

    enabled: bool = True
    tick: float = 1.0
    """Seconds between checks for due schedules."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MetricsSettings:
    """``[metrics]``: the HTTP endpoint (``/metrics``, ``/healthz``, ``/events``)."""

    enabled: bool = False
    addr: str = "127.0.0.1:9090"
    """``host:port`` to listen on; port 0 picks a free port."""
    auth_token: str | None = field(default=None, repr=False)
    """Bearer token required on every request when set."""
    allowed_cidrs: tuple[str, ...] = ()
    """Client networks allowed to connect; empty allows every client."""
    tls_cert: Path | None = None
    """PEM certificate (chain) to serve HTTPS with; needs :attr:`tls_key`."""
    tls_key: Path | None = None
    """PEM private key of :attr:`tls_cert`."""
    tls_client_ca: Path | None = None
    """PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS)."""
    auth_limit: int = 30
    """Failed attempts (refused address, missing or wrong token) per client and window
    before the answer is 429."""
    auth_window: float = 60.0
    """Seconds of the failed-attempt window."""
    auth_max_entries: int = 1000
    """Client addresses whose failed attempts are tracked at most."""

    @property
    def host(self) -> str:
        """The host part of :attr:`addr` (without IPv6 brackets)."""
        host = self.addr.rpartition(":")[0]
        return host[1:-1] if host.startswith("[") else host

    @property
    def port(self) -> int:
        """The port part of :attr:`addr`."""
        return int(self.addr.rpartition(":")[2])

    @property
    def is_loopback(self) -> bool:
        """True when only local clients can reach the endpoint."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True, kw_only=True, slots=True)
class LoggingSettings:
    """``[logging]``: level name and whether to log JSON lines."""

    level: str = "INFO"
    json: bool = False


def _default_pools() -> tuple[PoolSettings, ...]:
    return (PoolSettings(name="default", queues=("default",)),)


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """The whole effective configuration of one process."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    pools: tuple[PoolSettings, ...] = field(default_factory=_default_pools)
    queues: tuple[QueueSettings, ...] = ()
    limits: tuple[RateLimitSettings, ...] = ()
    """Every rate limit to sync: ``[limits]`` plus the ``queue:NAME`` limits of ``[queues]``."""
    schedules: tuple[ScheduleSettings, ...] = ()
    beat: BeatSettings = field(default_factory=BeatSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    source_file: Path | None = None
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Dotted key → ``default``, ``file:<path>``, ``env:<NAME>`` or ``flag:--<name>``."""
    warnings: tuple[str, ...] = ()
    """Accepted-but-ignored keys and other non-fatal remarks, one rendered line each."""

    @property
    def queue_names(self) -> tuple[str, ...]:
        """Every queue served by some pool, in order of first appearance."""
        seen: dict[str, None] = {}
        for pool in self.pools:
            seen.update(dict.fromkeys(pool.queues))
        return tuple(seen)

    def pool(self, name: str) -> PoolSettings:
        """The pool called *name*; KeyError if there is none."""
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(name)

    def queue(self, name: str) -> QueueSettings:
        """The ``[queues.NAME]`` settings of *name* (defaults when the file has none)."""
        for queue in self.queues:
            if queue.name == name:
                return queue
        return QueueSettings(name=name)

    def source_of(self, key: str) -> str:
        """Where the value of dotted *key* came from (``default`` when not recorded)."""
        return self.sources.get(key, "default")


ENV_VARS: Mapping[str, str] = MappingProxyType(
    {
        # Within one setting, a later variable wins: reproq's REPROQ_* names beat the Go
        # worker's. The database's variables are reproq.db.DSN_ENV_VARS.
        "REPROQ_DB_POOL_SIZE": "database.pool_size",
        "REPROQ_DATA_DIR": "database.embedded_data_dir",
        "REPROQ_PG_PORT": "database.embedded_port",
        "WORKER_ID": "worker.worker_id",
        "REPROQ_WORKER_ID": "worker.worker_id",
        "REPROQ_PROCESS_ROLE": "worker.process_role",
        "REPROQ_LEASE_SECONDS": "worker.lease_seconds",
        "REPROQ_HEARTBEAT_SECONDS": "worker.heartbeat_seconds",
        "REPROQ_RECLAIM_INTERVAL_SECONDS": "worker.reclaim_interval_seconds",
        "PRIORITY_AGING_FACTOR": "worker.priority_aging_factor",
        "REPROQ_PRIORITY_AGING_FACTOR": "worker.priority_aging_factor",
        "ALLOWED_TASK_MODULES": "worker.allowed_task_modules",
        "REPROQ_ALLOWED_TASK_MODULES": "worker.allowed_task_modules",
        "REPROQ_SHUTDOWN_TIMEOUT": "worker.shutdown_timeout",
        "REPROQ_LOGS_DIR": "worker.logs_dir",
        "REPROQ_MAX_PAYLOAD_BYTES": "worker.max_payload_bytes",
        "REPROQ_MAX_OUTPUT_BYTES": "worker.max_output_bytes",
        "REPROQ_POLL_INTERVAL": "worker.poll_interval",
        "REPROQ_CONCURRENCY": "worker.concurrency",
        "QUEUE_NAMES": "worker.queues",
        "REPROQ_QUEUES": "worker.queues",
        "REPROQ_EXECUTOR": "worker.executor",
        "REPROQ_BEAT_ENABLED": "beat.enabled",
        "REPROQ_BEAT_TICK": "beat.tick",
        "REPROQ_METRICS_ENABLED": "metrics.enabled",
        "METRICS_ADDR": "metrics.addr",
        "REPROQ_METRICS_ADDR": "metrics.addr",
        "METRICS_AUTH_TOKEN": "metrics.auth_token",
        "REPROQ_METRICS_AUTH_TOKEN": "metrics.auth_token",
        "METRICS_ALLOW_CIDRS": "metrics.allowed_cidrs",
        "REPROQ_METRICS_ALLOWED_CIDRS": "metrics.allowed_cidrs",
        "METRICS_TLS_CERT": "metrics.tls_cert",
        "REPROQ_METRICS_TLS_CERT": "metrics.tls_cert",
        "METRICS_TLS_KEY": "metrics.tls_key",
        "REPROQ_METRICS_TLS_KEY": "metrics.tls_key",
        "METRICS_TLS_CLIENT_CA": "metrics.tls_client_ca",
        "REPROQ_METRICS_TLS_CLIENT_CA": "metrics.tls_client_ca",
        "METRICS_AUTH_LIMIT": "metrics.auth_limit",
        "REPROQ_METRICS_AUTH_LIMIT": "metrics.auth_limit",
        "METRICS_AUTH_WINDOW": "metrics.auth_window",
        "REPROQ_METRICS_AUTH_WINDOW": "metrics.auth_window",
        "METRICS_AUTH_MAX_ENTRIES": "metrics.auth_max_entries",
        "REPROQ_METRICS_AUTH_MAX_ENTRIES": "metrics.auth_max_entries",
        "REPROQ_LOG_LEVEL": "logging.level",
        "REPROQ_LOG_JSON": "logging.json",
    }
)
"""Environment variable → dotted setting it sets. Empty variables count as unset."""


def _thaw(value: object) -> Any:
    """A JSON-ready copy of a frozen value (tuples → lists, mappings → dicts)."""
    if isinstance(value, Mapping):
        return {str(k): _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value
