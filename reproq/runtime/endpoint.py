"""The HTTP endpoint of one process, assembled: metrics, health, events and the server.

``reproq up`` builds one for its components; ``reproq worker`` builds one when metrics
are asked for (Reproq Worker's ``--metrics-port``/``--metrics-addr``), which then serves
the same ``/metrics``, ``/healthz`` and ``/events`` from the worker process::

    endpoint = Endpoint(settings.metrics, dsn=dsn)
    worker = Worker(dsn, options, metrics=endpoint.sink)
    endpoint.watch_worker(worker)
    endpoint.start()
    ...
    endpoint.close()
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Protocol

from reproq.config import MetricsSettings
from reproq.runtime.events import EventBroker
from reproq.runtime.health import ComponentState, HealthCheck, HealthReport
from reproq.runtime.httphandler import Limits
from reproq.runtime.httpserver import MetricsServer
from reproq.runtime.metrics import DatabaseReader, MetricsSink, RuntimeMetrics

__all__ = ["Endpoint", "WatchedWorker"]

_DEFAULT_STALE = dt.timedelta(minutes=3)


class WatchedWorker(Protocol):
    """What the endpoint reads from a :class:`~reproq.engine.worker.Worker` for health."""

    @property
    def ready(self) -> object:
        """An event set once the worker takes tasks (``is_set()``)."""

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""

    @property
    def error(self) -> BaseException | None:
        """Why the worker ended, if it failed."""


class Endpoint:
    """``/metrics``, ``/healthz`` and ``/events`` of one process, over one monitoring connection.

    *components* reports each supervised component's state for ``/healthz`` (none: only
    the database counts); *shutting_down* makes it answer 503 while the process drains.
    """

    def __init__(
        self,
        settings: MetricsSettings,
        *,
        dsn: str,
        components: Callable[[], Mapping[str, ComponentState]] | None = None,
        shutting_down: Callable[[], bool] = lambda: False,
        stale_after: dt.timedelta = _DEFAULT_STALE,
        process_metrics: bool = True,
        limits: Limits | None = None,
    ) -> None:
        self.settings = settings
        self.reader = DatabaseReader(dsn, stale_after=stale_after)
        self.events = EventBroker()
        self._components = components or dict
        self._shutting_down = shutting_down
        self.check = HealthCheck(
            db_problem=self.reader.ping,
            components=self._component_states,
            shutting_down=self._is_shutting_down,
        )
        self.metrics = RuntimeMetrics(
            reader=self.reader,
            components=lambda: {
                name: state is ComponentState.RUNNING
                for name, state in self._component_states().items()
            },
            events=self.events,
            process_metrics=process_metrics,
        )
        self.server = MetricsServer(
            settings,
            registry=self.metrics.registry,
            health=self.health,
            events=self.events,
            limits=limits,
        )

    @property
    def sink(self) -> MetricsSink:
        """What the workers of this process report to (counters, histograms, events)."""
        return self.metrics

    @property
    def url(self) -> str:
        """Base URL of the endpoint."""
        return self.server.url

    def health(self) -> HealthReport:
        """The ``/healthz`` verdict now."""
        return self.check()

    # Indirect, so that watch_worker() can change what they report after construction.
    def _component_states(self) -> Mapping[str, ComponentState]:
        return self._components()

    def _is_shutting_down(self) -> bool:
        return self._shutting_down()

    def watch_worker(self, worker: WatchedWorker, name: str = "worker") -> None:
        """Report *worker* as component *name* in ``/healthz``: 503 while it starts, after
        it failed, and while it drains at shutdown (so load balancers let go)."""

        def states() -> dict[str, ComponentState]:
            if worker.error is not None:
                return {name: ComponentState.STOPPED}
            if worker.stopping:
                return {name: ComponentState.STOPPING}
            ready = getattr(worker.ready, "is_set", lambda: False)()
            return {name: ComponentState.RUNNING if ready else ComponentState.STARTING}

        self._components = states
        self._shutting_down = lambda: worker.stopping

    def start(self) -> None:
        """Bind (a :class:`~reproq.errors.ReproqError` if it cannot) and serve on a thread."""
        self.server.start()

    def close(self) -> None:
        """Stop serving and close the monitoring connection (idempotent)."""
        self.server.close()
        self.reader.close()
