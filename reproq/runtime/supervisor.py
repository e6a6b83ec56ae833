"""The runtime behind ``reproq up``: every component of one process, built from Settings.

:class:`Runtime` does, in order:

1. start the embedded PostgreSQL when no DSN is configured (:mod:`reproq.runtime.embedded`);
2. check the database answers, then apply migrations (or, with ``migrate=False``,
   require an up-to-date schema);
3. sync the file's ``[queues]`` (pause state) and rate limits (``[limits]`` and each
   queue's ``rate``/``burst``) through :mod:`reproq.ops.admin`, and its ``[[schedules]]``
   into ``periodic_tasks`` through :func:`reproq.schedule.beat.sync_schedules`;
4. start the components, each on its own thread: one worker per ``[[pools]]`` entry
   (worker id ``<worker_id or host-pid>-<pool>``; the workers also reclaim expired
   leases), the beat when enabled, and the ``/metrics`` + ``/healthz`` server when
   enabled. One log line per component states its settings.

Then :meth:`Runtime.run` supervises until stopped. A component whose thread ends
without being asked to is logged, reported by ``/healthz`` as 503 and started again
after a backoff (1 s, doubling up to a minute; reset after a minute of good running).
Restarting keeps the rest of the process serving; an orchestrator that prefers to
replace the whole process can act on the 503.

Shutdown (:meth:`Runtime.request_stop`, wired to SIGTERM/SIGINT by
:meth:`Runtime.run_until_signalled`): pools stop claiming and let running tasks finish
for up to ``shutdown_timeout``, then give the remaining leases back (DESIGN.md §4.5);
the beat steps down; then the metrics server closes and, last, the embedded PostgreSQL
stops if this process started it. A second request forces: pools give their leases
back at once. SIGHUP calls :meth:`Runtime.reload`: schedules, queue controls and limits
are re-read from the file and synced without touching running tasks; settings that only
take effect at start (pools, worker, database, metrics, beat) are reported as needing a
restart. An invalid file is logged and the running configuration kept.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from reproq.clock import Clock, SystemClock
from reproq.config import (
    MockOptions,
    PoolSettings,
    ProcessOptions,
    QueueSettings,
    RateLimitSettings,
    Settings,
    SubprocessOptions,
)
from reproq.db import Conn, connection, redact_dsn
from reproq.engine.worker import Worker, WorkerOptions
from reproq.engine.worker_group import WorkerGroup, make_worker
from reproq.errors import ConfigError, NotFound, ReproqError
from reproq.runtime.embedded import EmbeddedPostgres
from reproq.runtime.health import ComponentState, HealthCheck, HealthReport
from reproq.runtime.httpserver import MetricsServer
from reproq.runtime.metrics import DatabaseReader, MetricsSink, RuntimeMetrics
from reproq.schedule.beat import Beat, SyncReport, sync_schedules

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_START",
    "ReloadReport",
    "Runtime",
    "Service",
    "executor_options",
    "pool_worker_id",
    "worker_options",
]

logger = logging.getLogger("reproq.runtime")

BACKOFF_START = 1.0
"""Seconds before the first restart of a component that died."""

BACKOFF_MAX = 60.0
"""Longest wait between restarts of a component that keeps dying."""

_STABLE_AFTER = 60.0
"""A component running this long has its restart backoff reset."""

_FORCE_GRACE = 10.0
"""Seconds components get to return after a forced stop before they are abandoned."""


class Service(Protocol):
    """A component's running object: ``run`` blocks until *stop* is set."""

    def run(self, stop: threading.Event) -> None:
        """Work until *stop* is set, then clean up and return."""


def worker_options(settings: Settings, pool: PoolSettings) -> WorkerOptions:
    """The :class:`~reproq.engine.worker.WorkerOptions` of *pool*'s worker."""
    worker = settings.worker
    return WorkerOptions(
        worker_id=pool_worker_id(settings, pool),
        queues=pool.queues,
        concurrency=pool.concurrency,
        connections=pool.connections,
        executor=str(pool.executor),
        executor_options=executor_options(settings, pool),
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


def executor_options(settings: Settings, pool: PoolSettings) -> dict[str, Any]:
    """Keyword arguments of *pool*'s executor class, from its ``[pools.options]``."""
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
        }
    if isinstance(options, SubprocessOptions):
        return {
            "python": options.python,
            "module": options.module,
            "payload_mode": str(options.payload_mode),
            "max_payload_bytes": worker.max_payload_bytes,
            "max_output_bytes": worker.max_output_bytes,
        }
    if isinstance(options, MockOptions):
        return {"duration": options.duration, "failure_rate": options.failure_rate}
    return {}


def pool_worker_id(settings: Settings, pool: PoolSettings) -> str:
    """The worker id of *pool*'s worker: ``<worker_id or hostname-pid>-<pool name>``."""
    base = settings.worker.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    return f"{base}-{pool.name}"


@dataclass(frozen=True, kw_only=True, slots=True)
class ReloadReport:
    """What :meth:`Runtime.reload` changed (or why it changed nothing)."""

    applied: bool
    """False when the new file was invalid and the running configuration was kept."""
    errors: tuple[str, ...] = ()
    schedules: SyncReport | None = None
    queues_changed: tuple[str, ...] = ()
    limits_set: tuple[str, ...] = ()
    limits_removed: tuple[str, ...] = ()
    needs_restart: tuple[str, ...] = ()
    """Top-level sections whose changes only take effect when the process restarts."""


@dataclass(kw_only=True, slots=True)
class _Component:
    """One supervised component and the thread currently running it."""

    name: str
    factory: Callable[[], Service]
    force: Callable[[Service], None] | None = None
    stop_last: bool = False
    """Stopped only after every other component has stopped (the metrics server)."""
    state: ComponentState = ComponentState.STOPPED
    service: Service | None = None
    thread: threading.Thread | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    started_at: float = 0.0
    failures: int = 0
    restart_at: float = 0.0
    error: str | None = None

    def start(
        self,
        on_exit: Callable[[_Component, BaseException | None], None],
        service: Service | None = None,
    ) -> None:
        """Run a new service from :attr:`factory` (or *service*) on a new thread."""
        self.stop_event = threading.Event()
        self.service = service if service is not None else self.factory()
        self.started_at = time.monotonic()
        service, stop = self.service, self.stop_event

        def target() -> None:
            failure: BaseException | None = None
            try:
                service.run(stop)
            except BaseException as exc:  # reported to the supervisor, which restarts it
                failure = exc
            on_exit(self, failure)

        self.thread = threading.Thread(target=target, name=f"reproq-{self.name}", daemon=True)
        # Before start(): a service that dies at once must not be marked running afterwards.
        self.state = ComponentState.RUNNING
        self.thread.start()


class Runtime:
    """Builds and supervises the components of one ``reproq up`` process."""

    def __init__(
        self,
        settings: Settings,
        *,
        migrate: bool = True,
        reload_settings: Callable[[], Settings] | None = None,
        clock: Clock | None = None,
        metrics_sink: MetricsSink | None = None,
    ) -> None:
        """*reload_settings* re-reads the configuration for :meth:`reload` (SIGHUP);
        None makes reload a no-op. *metrics_sink* replaces the Prometheus sink (tests)."""
        self.settings = settings
        self.migrate = migrate
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._reload_settings = reload_settings
        self._sink_override = metrics_sink
        self._embedded: EmbeddedPostgres | None = None
        self._dsn: str | None = None
        self._components: list[_Component] = []
        self._extra: list[_Component] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop_requests = 0
        self._reload_requested = False
        self._started = False
        self._stopped = False
        self._metrics_server: MetricsServer | None = None
        self._reader: DatabaseReader | None = None
        self._sink: MetricsSink | None = None
        self._health: HealthCheck | None = None

    # -- facts --------------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        """The DSN in use (the embedded server's when no DSN is configured)."""
        if self._dsn is None:
            raise ReproqError("the runtime has not been started")
        return self._dsn

    @property
    def stopping(self) -> bool:
        """Whether a stop has been requested."""
        return self._stop_requests > 0

    def connections_needed(self) -> int:
        """Connections this process holds while running (the budget ``pool_size`` bounds).

        Each lane of a pool's worker (``connections`` of them): one for claiming,
        finishing and heartbeats, one listening for NOTIFY; the beat: its leadership lock
        and its work; metrics: one monitoring connection.
        """
        settings = self.settings
        return (
            2 * sum(pool.connections for pool in settings.pools)
            + (2 if settings.beat.enabled else 0)
            + (1 if settings.metrics.enabled else 0)
        )

    def component_states(self) -> dict[str, ComponentState]:
        """Each component's name and state."""
        with self._lock:
            return {c.name: c.state for c in self._components}

    def health(self) -> HealthReport:
        """The ``/healthz`` verdict now."""
        if self._health is None:
            self._health = HealthCheck(
                db_problem=self._db_problem,
                components=self.component_states,
                shutting_down=lambda: self.stopping,
            )
        return self._health()

    def _db_problem(self) -> str | None:
        return self._reader.ping() if self._reader is not None else None

    # -- start --------------------------------------------------------------------------

    def start(self) -> None:
        """Prepare the database and start every component (see the module doc).

        On failure everything started so far is stopped again before the error
        propagates (a :class:`ReproqError`).
        """
        self._validate()
        try:
            self._start_database()
            self._prepare_schema()
            with connection(self.dsn, application_name="reproq-up") as conn:
                self._sync(conn, previous=None)
            self._start_components()
            self._started = True
        except BaseException:
            self._shutdown(graceful=False)
            raise

    def _validate(self) -> None:
        """Check each pool's worker settings before anything starts (ConfigError, exit 2)."""
        settings = self.settings
        file = str(settings.source_file) if settings.source_file is not None else None
        for pool in settings.pools:
            try:
                worker_options(settings, pool).validate()
            except ConfigError as exc:
                key = exc.key or ""
                section = f"pools.{pool.name}" if key in ("queues", "concurrency") else "worker"
                raise ConfigError(exc.message, file=file, key=f"{section}.{key}") from exc

    def _start_database(self) -> None:
        db = self.settings.database
        if db.dsn:
            self._dsn = db.dsn
        else:
            self._embedded = EmbeddedPostgres(db.embedded_data_dir, port=db.embedded_port or None)
            self._dsn = self._embedded.start()
            logger.info("embedded PostgreSQL: %s", self._embedded.describe())
        # Tasks that enqueue more work (``some_task.enqueue()``) use the default client,
        # which reads REPROQ_DSN; child processes of the executors inherit it.
        os.environ["REPROQ_DSN"] = self._dsn

    def _prepare_schema(self) -> None:
        from reproq.pg.migrations import current_version, migrate, require_current_schema

        dsn = self.dsn
        # Connecting first turns "unreachable" into one clear line naming the (redacted) DSN.
        with connection(dsn, application_name="reproq-up") as conn:
            if not self.migrate:
                require_current_schema(conn)
        applied = migrate(dsn) if self.migrate else []
        with connection(dsn, application_name="reproq-up") as conn:
            version = current_version(conn)
        done = f"applied {', '.join(applied)}" if applied else "up to date"
        if not self.migrate:
            done = "not migrated (--no-migrate)"
        needed = self.connections_needed()
        logger.info(
            "database: %s (schema version %d, %s; about %d connections, pool_size %d)",
            redact_dsn(dsn),
            version,
            done,
            needed,
            self.settings.database.pool_size,
        )
        if needed > self.settings.database.pool_size:
            logger.warning(
                "this process holds about %d connections (2 per pool connection, 2 for beat, "
                "1 for metrics), more than database.pool_size = %d: raise it, and check the "
                "server's max_connections",
                needed,
                self.settings.database.pool_size,
            )

    def add_component(
        self,
        name: str,
        factory: Callable[[], Service],
        *,
        force: Callable[[Service], None] | None = None,
    ) -> None:
        """Supervise one more service (call before :meth:`start`).

        *factory* builds a fresh service for each (re)start; *force*, if given, is called
        on a second stop request to make the service return sooner.
        """
        if self._started:
            raise ReproqError("add_component() must be called before start()")
        self._extra.append(_Component(name=name, factory=factory, force=force))

    def _start_components(self) -> None:
        settings = self.settings
        self._setup_metrics()
        components = [self._pool_component(pool) for pool in settings.pools]
        if settings.beat.enabled:
            components.append(_Component(name="beat", factory=self._make_beat))
        components.extend(self._extra)
        server = self._metrics_server
        if server is not None:
            components.append(_Component(name="metrics", factory=lambda: server, stop_last=True))
        # Build every service before starting any: a bad pool setting fails the start
        # (exit 2) instead of a half-started process.
        services = [component.factory() for component in components]
        with self._lock:
            self._components = components
        for component, service in zip(components, services, strict=True):
            component.start(self._on_exit, service)
        for pool in settings.pools:
            logger.info("pool %s: %s", pool.name, self._describe_pool(pool))
        reclaim = settings.worker.reclaim_interval_seconds
        if reclaim > 0:
            logger.info(
                "reclaimer: expired leases back to READY every %gs (run by each pool's worker)",
                reclaim,
            )
        else:
            logger.info("reclaimer: disabled (reclaim_interval_seconds = 0)")
        if settings.beat.enabled:
            logger.info(
                "beat: tick %gs, %d schedule(s); leads while it holds the advisory lock",
                settings.beat.tick,
                len(settings.schedules),
            )
        else:
            logger.info("beat: disabled")
        if self._metrics_server is not None:
            logger.info("metrics: %s", self._metrics_server.describe())
        else:
            logger.info("metrics: disabled")
        logger.info(
            "ready: %d pool(s), %d slot(s) in all; SIGTERM/SIGINT to stop, SIGHUP to reload",
            len(settings.pools),
            sum(pool.concurrency for pool in settings.pools),
        )

    def _setup_metrics(self) -> None:
        settings = self.settings
        self._sink = self._sink_override
        if not settings.metrics.enabled:
            return
        # A worker is stale after missing three heartbeats (never sooner than observe's default).
        stale = max(180.0, 3 * settings.worker.heartbeat_seconds)
        self._reader = DatabaseReader(self.dsn, stale_after=dt.timedelta(seconds=stale))
        metrics = RuntimeMetrics(
            reader=self._reader,
            components=lambda: {
                name: state is ComponentState.RUNNING
                for name, state in self.component_states().items()
            },
        )
        if self._sink is None:
            self._sink = metrics
        server = MetricsServer(settings.metrics, registry=metrics.registry, health=self.health)
        server.bind()  # fail at start, before any worker runs, when the port is taken
        self._metrics_server = server

    # -- components ---------------------------------------------------------------------

    def _pool_component(self, pool: PoolSettings) -> _Component:
        def force(service: Service) -> None:
            if isinstance(service, Worker | WorkerGroup):
                service.request_stop(force=True)

        return _Component(
            name=f"pool:{pool.name}",
            factory=lambda: self._make_worker(pool),
            force=force,
        )

    def _make_worker(self, pool: PoolSettings) -> Service:
        service: Service = make_worker(
            self.dsn, worker_options(self.settings, pool), metrics=self._sink
        )
        return service

    def _describe_pool(self, pool: PoolSettings) -> str:
        return (
            f"worker_id={pool_worker_id(self.settings, pool)} queues={','.join(pool.queues)} "
            f"concurrency={pool.concurrency} connections={pool.connections} "
            f"executor={pool.executor} "
            f"lease={self.settings.worker.lease_seconds:g}s "
            f"heartbeat={self.settings.worker.heartbeat_seconds:g}s"
        )

    def _make_beat(self) -> Service:
        return Beat(self.dsn, tick=self.settings.beat.tick, clock=self.clock)

    def _on_exit(self, component: _Component, failure: BaseException | None) -> None:
        """Called on the component's thread when its ``run`` returns or raises."""
        with self._lock:
            expected = component.stop_event.is_set()
            if expected and failure is None:
                component.state = ComponentState.STOPPED
                return
            reason = f"{type(failure).__name__}: {failure}" if failure else "returned unexpectedly"
            component.error = reason
            if self._stop_requests:
                component.state = ComponentState.STOPPED
                then = "not restarted: shutting down"
            else:
                backoff = min(BACKOFF_MAX, BACKOFF_START * 2**component.failures)
                component.failures += 1
                component.restart_at = time.monotonic() + backoff
                component.state = ComponentState.RESTARTING
                then = f"restarting in {backoff:g}s"
        # A ReproqError is an expected kind of failure (database gone...): no traceback.
        trace = failure if failure is not None and not isinstance(failure, ReproqError) else None
        logger.error("%s died: %s; %s", component.name, reason, then, exc_info=trace)
        self._wake.set()

    # -- supervision --------------------------------------------------------------------

    def run(self) -> None:
        """Supervise until a stop is requested, then shut down (blocks)."""
        while not self._stop_requests:
            self._wake.wait(0.5)
            self._wake.clear()
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
            self._supervise()
        self._shutdown(graceful=True)

    def _supervise(self) -> None:
        now = time.monotonic()
        with self._lock:
            components = list(self._components)
        for component in components:
            if self._stop_requests:
                return
            if component.state is ComponentState.RUNNING:
                if component.failures and now - component.started_at >= _STABLE_AFTER:
                    component.failures = 0
            elif component.state is ComponentState.RESTARTING and now >= component.restart_at:
                logger.info("%s: starting again (restart %d)", component.name, component.failures)
                try:
                    component.start(self._on_exit)
                except Exception as exc:
                    # The factory itself failed (database down, ...): try again later.
                    self._on_exit(component, exc)

    def request_stop(self, *, force: bool = False) -> None:
        """Ask for a graceful stop; a second request (or *force*) forces it.

        Safe to call from a signal handler: it only sets flags, except that a forced
        stop also tells each worker to give its leases back now.
        """
        self._stop_requests += 2 if force else 1
        if self._stop_requests >= 2:
            self._force_components()
        self._wake.set()

    def request_reload(self) -> None:
        """Ask :meth:`run` to reload the configuration (signal-handler safe)."""
        self._reload_requested = True
        self._wake.set()

    def _force_components(self) -> None:
        for component in list(self._components):
            if component.force is not None and component.service is not None:
                try:
                    component.force(component.service)
                except Exception:
                    logger.exception("%s: forced stop failed", component.name)

    def run_until_signalled(self) -> int:
        """Install SIGTERM/SIGINT/SIGHUP handlers, :meth:`start`, :meth:`run`; returns 0.

        Must be called from the main thread. A signal during start-up lets the start
        finish (so the database is left consistent) and then shuts down; a second one
        aborts the start.
        """

        def on_stop(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if self._stop_requests:
                logger.warning("%s again: forcing shutdown, leases are given back now", name)
            else:
                logger.info("%s: shutting down gracefully (again to force)", name)
            self.request_stop()
            if not self._started and self._stop_requests >= 2:
                raise KeyboardInterrupt  # abort a start that hangs; start() cleans up

        def on_hup(signum: int, frame: FrameType | None) -> None:
            logger.info("SIGHUP: reloading the config")
            self.request_reload()

        handlers: dict[signal.Signals, Callable[[int, FrameType | None], None]] = {
            signal.SIGTERM: on_stop,
            signal.SIGINT: on_stop,
            signal.SIGHUP: on_hup,
        }
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        try:
            if not self._started:
                self.start()
            self.run()
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
        return 0

    def abandoned_threads(self) -> list[str]:
        """Components whose thread was still running when shutdown gave up on it."""
        with self._lock:
            return [
                c.name for c in self._components if c.thread is not None and c.thread.is_alive()
            ]

    # -- shutdown -----------------------------------------------------------------------

    def stop(self) -> None:
        """Request a graceful stop and shut everything down (when not using :meth:`run`)."""
        self.request_stop()
        self._shutdown(graceful=True)

    def _shutdown(self, *, graceful: bool) -> None:
        if self._stopped:
            return
        self._stopped = True
        if not self._stop_requests:
            self._stop_requests = 1
        with self._lock:
            components = list(self._components)
        # Pools and beat first; the metrics server keeps answering (503 "shutting down")
        # while they drain, so load balancers and probes see the shutdown.
        first = [c for c in components if not c.stop_last]
        last = [c for c in components if c.stop_last]
        for group in (first, last):
            with self._lock:
                for component in group:
                    if component.state is not ComponentState.STOPPED:
                        component.state = ComponentState.STOPPING
                    component.stop_event.set()
            self._join(group)
        self._close_metrics()
        if self._embedded is not None:
            try:
                self._embedded.stop()
            except ReproqError as exc:
                logger.error("%s", exc)
        left = [c.name for c in components if c.thread is not None and c.thread.is_alive()]
        if left:
            logger.error("still running after shutdown: %s", ", ".join(left))
        else:
            logger.info("reproq stopped%s", "" if graceful else " after a failed start")

    def _join(self, components: list[_Component]) -> None:
        """Wait for every component thread; a second stop request shortens the wait."""
        budget = self.settings.worker.shutdown_timeout + 30.0
        deadline = time.monotonic() + budget
        forced_at: float | None = None
        for component in components:
            thread = component.thread
            while thread is not None and thread.is_alive():
                if self._stop_requests >= 2 and forced_at is None:
                    forced_at = time.monotonic()
                    deadline = min(deadline, forced_at + _FORCE_GRACE)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if forced_at is None:
                        logger.warning("shutdown is taking too long: forcing")
                        self._stop_requests = max(self._stop_requests, 2)
                        self._force_components()
                        forced_at = time.monotonic()
                        deadline = forced_at + _FORCE_GRACE
                        continue
                    break
                thread.join(min(remaining, 0.2))
            if thread is not None and not thread.is_alive():
                component.state = ComponentState.STOPPED

    def _close_metrics(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.close()
        if self._reader is not None:
            self._reader.close()

    # -- syncing the file into the database ------------------------------------------------

    def reload(self) -> ReloadReport:
        """Re-read the configuration and apply what can change while running (SIGHUP)."""
        if self._reload_settings is None:
            logger.info("reload requested, but there is no config file to re-read")
            return ReloadReport(applied=False, errors=("no config file",))
        try:
            new = self._reload_settings()
        except ConfigError as exc:
            logger.error("reload: the config is invalid, keeping the running one: %s", exc)
            return ReloadReport(applied=False, errors=(str(exc),))
        old = self.settings
        try:
            with connection(self.dsn, application_name="reproq-up") as conn:
                report = self._sync(conn, previous=old, new=new)
        except ConfigError as exc:
            logger.error("reload: %s; keeping the running config", exc)
            return ReloadReport(applied=False, errors=(str(exc),))
        except ReproqError as exc:
            logger.error("reload failed, keeping the running config: %s", exc)
            return ReloadReport(applied=False, errors=(str(exc),))
        needs_restart = tuple(
            section
            for section in ("database", "worker", "pools", "beat", "metrics")
            if getattr(old, section) != getattr(new, section)
        ) + (("logging.json",) if old.logging.json != new.logging.json else ())
        for warning in sorted(set(new.warnings) - set(old.warnings)):
            logger.warning("config: %s", warning)
        if needs_restart:
            logger.warning(
                "reload: changes to %s take effect at the next start; not applied",
                ", ".join(needs_restart),
            )
        if new.logging.level != old.logging.level:
            logging.getLogger().setLevel(new.logging.level.upper())
            logger.info("reload: log level now %s", new.logging.level.upper())
        # Keep the start-time sections: only the synced ones changed for real.
        self.settings = _replace_live_sections(old, new)
        report = ReloadReport(
            applied=True,
            schedules=report.schedules,
            queues_changed=report.queues_changed,
            limits_set=report.limits_set,
            limits_removed=report.limits_removed,
            needs_restart=needs_restart,
        )
        if not (
            report.queues_changed
            or report.limits_set
            or report.limits_removed
            or (report.schedules and _schedules_changed(report.schedules))
            or needs_restart
        ):
            logger.info("reload: nothing changed")
        logger.info("reload: done")
        return report

    def _sync(
        self, conn: Conn, *, previous: Settings | None, new: Settings | None = None
    ) -> ReloadReport:
        """Sync queues, limits and schedules of *new* (default: the current settings)."""
        settings = new if new is not None else self.settings
        # One transaction: a reload applies all of the file or, on an error, none of it.
        with conn.transaction():
            queues = _sync_queues(conn, settings, previous)
            limits_set, limits_removed = _sync_limits(conn, settings, previous)
            schedules = self._sync_schedules(conn, settings, previous)
        return ReloadReport(
            applied=True,
            schedules=schedules,
            queues_changed=queues,
            limits_set=limits_set,
            limits_removed=limits_removed,
        )

    def _sync_schedules(
        self, conn: Conn, settings: Settings, previous: Settings | None
    ) -> SyncReport | None:
        # A file that never declared schedules leaves periodic_tasks alone: rows may come
        # from reproq-django or `reproq schedule` and must not be disabled by an empty list.
        if not settings.schedules and not (previous is not None and previous.schedules):
            if previous is None:
                logger.info("schedules: none in the config; periodic_tasks left as they are")
            return None
        report = sync_schedules(conn, settings.schedules, now=self.clock.now())
        for label, names in (
            ("created", report.created),
            ("updated", report.updated),
            ("rescheduled", report.rescheduled),
            ("disabled (no longer in the config)", report.disabled),
        ):
            if names:
                logger.info("schedules %s: %s", label, ", ".join(names))
        for name in report.not_owned:
            logger.warning(
                "schedule %s: its periodic_tasks row was not created by a reproq config "
                "(reproq-django's, or written by hand); left as it is",
                name,
            )
        if previous is None:
            logger.info(
                "schedules: %d in the config (%d unchanged)",
                len(settings.schedules),
                len(report.unchanged),
            )
        return report


def _schedules_changed(report: SyncReport) -> bool:
    return bool(report.created or report.updated or report.rescheduled or report.disabled)


def _replace_live_sections(old: Settings, new: Settings) -> Settings:
    """*old* with the sections a reload applies (queues, limits, schedules, logging) of *new*."""
    return dataclasses.replace(
        old,
        queues=new.queues,
        limits=new.limits,
        schedules=new.schedules,
        logging=new.logging,
        sources=new.sources,
        warnings=new.warnings,
    )


def _pause_is_explicit(settings: Settings, queue: QueueSettings) -> bool:
    """Whether the file (or env/flags) states the queue's pause state, not the default."""
    return settings.source_of(f"queues.{queue.name}.paused") != "default"


def _sync_queues(conn: Conn, settings: Settings, previous: Settings | None) -> tuple[str, ...]:
    """Apply each queue's explicit ``paused`` setting; returns the queues whose state changed.

    Queues whose pause state the file does not state keep whatever an operator set with
    ``reproq pause``/``resume`` or the TUI.
    """
    from reproq.ops.admin import pause_queue, resume_queue
    from reproq.ops.observe import list_queues

    current = {q.queue: q for q in list_queues(conn, count_cap=1)}
    changed: list[str] = []
    for queue in settings.queues:
        if not _pause_is_explicit(settings, queue):
            continue
        now = current.get(queue.name)
        was_paused = bool(now and now.paused)
        if queue.paused:
            if was_paused and now is not None and now.pause_reason == queue.reason:
                continue
            pause_queue(conn, queue.name, queue.reason)
            reason = f" ({queue.reason})" if queue.reason else ""
            logger.info("queue %s: paused by the config%s", queue.name, reason)
        else:
            if not was_paused:
                continue
            resume_queue(conn, queue.name)
            logger.info("queue %s: resumed by the config (paused = false)", queue.name)
        changed.append(queue.name)
    return tuple(changed)


def _sync_limits(
    conn: Conn, settings: Settings, previous: Settings | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Set each configured limit that differs; on reload remove limits dropped from the file.

    Returns (keys set, keys removed). At start, limits in the database that the file
    does not mention are kept (``reproq limit set`` may have made them) and listed.
    """
    from reproq.ops.admin import remove_limit, set_limit
    from reproq.ops.observe import list_limits

    existing = {lim.key: lim for lim in list_limits(conn)}
    wanted: Mapping[str, RateLimitSettings] = {lim.key: lim for lim in settings.limits}
    set_keys: list[str] = []
    for key, lim in wanted.items():
        have = existing.get(key)
        if (
            have is not None
            and abs(have.tokens_per_second - lim.rate) < 1e-6
            and have.burst_size == lim.burst
        ):
            continue
        set_limit(conn, key, lim.rate, lim.burst)
        rate = "no limit" if lim.rate <= 0 else f"{lim.rate:g}/s burst {lim.burst}"
        logger.info("rate limit %s: %s", key, rate)
        set_keys.append(key)
    removed: list[str] = []
    if previous is not None:
        for key in sorted({lim.key for lim in previous.limits} - set(wanted)):
            try:
                remove_limit(conn, key)
            except NotFound:
                continue
            logger.info("rate limit %s: removed (no longer in the config)", key)
            removed.append(key)
    else:
        extra = sorted(
            key
            for key, lim in existing.items()
            if key not in wanted and not (key == "global" and lim.unlimited)
        )
        if extra:
            logger.info(
                "rate limits in the database but not in the config (kept): %s", ", ".join(extra)
            )
    return tuple(set_keys), tuple(removed)
