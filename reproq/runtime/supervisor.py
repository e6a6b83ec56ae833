"""The runtime behind ``reproq up``: every component of one process, built from Settings.

:class:`Runtime` does, in order:

1. start the embedded PostgreSQL when no DSN is configured (:mod:`reproq.runtime.embedded`);
2. check the database answers, then migrate (or require an up-to-date schema);
3. apply the file's ``[queues]``, rate limits and ``[[schedules]]`` to the database
   (:mod:`reproq.runtime.apply`);
4. start the components, each on its own thread: one worker per ``[[pools]]`` entry
   (worker id ``<worker_id or host-pid>-<pool>``; the workers also reclaim expired
   leases), the beat when enabled, and the HTTP endpoint (``/metrics``, ``/healthz``,
   ``/events``: :mod:`reproq.runtime.endpoint`) when enabled. One log line per
   component states its settings.

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
back at once. SIGHUP calls :meth:`Runtime.reload`, which re-reads the file and applies
what can change while running (:func:`reproq.runtime.apply.apply_reload`); an invalid
file is logged and the running configuration kept.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Protocol

from reproq.clock import Clock, SystemClock
from reproq.config import PoolSettings, Settings
from reproq.db import connection, redact_dsn
from reproq.engine.worker import Worker
from reproq.errors import ConfigError, ReproqError
from reproq.producer.client import configure
from reproq.runtime.apply import ReloadReport, apply_reload, sync
from reproq.runtime.embedded import EmbeddedPostgres
from reproq.runtime.endpoint import Endpoint
from reproq.runtime.forced_exit import FORCED_EXIT_SECONDS, exit_later
from reproq.runtime.health import ComponentState, HealthCheck, HealthReport
from reproq.runtime.httpserver import MetricsServer
from reproq.runtime.metrics import MetricsSink
from reproq.runtime.pools import check_pools, describe_executor, pool_worker_id, worker_options
from reproq.schedule.beat import Beat

__all__ = ["BACKOFF_MAX", "BACKOFF_START", "ReloadReport", "Runtime", "Service"]

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
        self._endpoint: Endpoint | None = None
        self._metrics_server: MetricsServer | None = None
        self._sink: MetricsSink | None = None

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
        """The ``/healthz`` verdict now (the database counts when metrics are enabled)."""
        if self._endpoint is not None:
            return self._endpoint.health()
        return HealthCheck(
            db_problem=lambda: None,
            components=self.component_states,
            shutting_down=lambda: self.stopping,
        )()

    # -- start --------------------------------------------------------------------------

    def start(self) -> None:
        """Prepare the database and start every component (see the module doc).

        On failure everything started so far is stopped again before the error
        propagates (a :class:`ReproqError`).
        """
        check_pools(self.settings)
        try:
            self._start_database()
            self._prepare_schema()
            with connection(self.dsn, application_name="reproq-up") as conn:
                sync(conn, self.settings, previous=None, now=self.clock.now())
            self._start_components()
            self._started = True
        except BaseException:
            self._shutdown(graceful=False)
            raise

    def _start_database(self) -> None:
        db = self.settings.database
        if db.dsn:
            self._dsn = db.dsn
        else:
            self._embedded = EmbeddedPostgres(db.embedded_data_dir, port=db.embedded_port or None)
            self._dsn = self._embedded.start()
            logger.info("embedded PostgreSQL: %s", self._embedded.describe())
        # Tasks that enqueue more work (``some_task.enqueue()``) use the default client:
        # in this process the one configured here, in task processes the DSN each
        # executor puts in their environment (runtime.pools.task_env).
        configure(self._dsn)

    def _prepare_schema(self) -> None:
        from reproq.pg.migrations import prepare_schema

        dsn = self.dsn
        version, applied = prepare_schema(dsn, apply=self.migrate, application_name="reproq-up")
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
        endpoint = Endpoint(
            settings.metrics,
            dsn=self.dsn,
            components=self.component_states,
            shutting_down=lambda: self.stopping,
            stale_after=dt.timedelta(seconds=stale),
        )
        if self._sink is None:
            self._sink = endpoint.sink
        endpoint.server.bind()  # fail at start, before any worker runs, when the port is taken
        self._endpoint = endpoint
        self._metrics_server = endpoint.server

    # -- components ---------------------------------------------------------------------

    def _pool_component(self, pool: PoolSettings) -> _Component:
        def force(service: Service) -> None:
            if isinstance(service, Worker):
                service.request_stop(force=True)

        return _Component(
            name=f"pool:{pool.name}",
            factory=lambda: self._make_worker(pool),
            force=force,
        )

    def _make_worker(self, pool: PoolSettings) -> Service:
        service: Service = Worker(
            self.dsn, worker_options(self.settings, pool, dsn=self.dsn), metrics=self._sink
        )
        return service

    def _describe_pool(self, pool: PoolSettings) -> str:
        return (
            f"worker_id={pool_worker_id(self.settings, pool)} queues={','.join(pool.queues)} "
            f"concurrency={pool.concurrency} connections={pool.connections} "
            f"executor={describe_executor(self.settings, pool)} "
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
        aborts the start. After a second signal the process ends within
        ``_FORCE_GRACE`` plus :data:`~reproq.runtime.forced_exit.FORCED_EXIT_SECONDS`
        whatever its threads are doing (a pool stuck on a frozen database, say).
        """
        forced: list[threading.Event] = []

        def on_stop(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if self._stop_requests:
                logger.warning("%s again: forcing shutdown, leases are given back now", name)
                if not forced:
                    forced.append(exit_later(_FORCE_GRACE + FORCED_EXIT_SECONDS, what="reproq up"))
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
            for done in forced:
                done.set()
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
        if self._endpoint is not None:
            self._endpoint.close()

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
        try:
            with connection(self.dsn, application_name="reproq-up") as conn:
                self.settings, report = apply_reload(conn, self.settings, new, now=self.clock.now())
        except ReproqError as exc:  # a ConfigError too: the database refused the file's values
            logger.error("reload failed, keeping the running config: %s", exc)
            return ReloadReport(applied=False, errors=(str(exc),))
        return report
