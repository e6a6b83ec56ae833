"""The worker: claims task runs, executes them in slots, records how they ended.

Build a :class:`Worker` from :class:`~reproq.engine.options.WorkerOptions` (also
importable from here) and run it with :meth:`Worker.run`, or with :meth:`Worker.start`
and :meth:`Worker.join`; stop it with :meth:`Worker.request_stop`. The worker installs
no signal handlers: the CLI (or the runtime) calls ``request_stop``.

A worker runs ``options.connections`` *lanes* (:mod:`reproq.engine.lane`), each with its
own database connection, control loop and share of the slots. A connection carries one
round trip at a time, and for short tasks the database's work on that round trip sets
the pace: the server spends one core at most on it. With N lanes the server works on N
round trips at once.

Lane 1 keeps the worker id; lane k is ``<worker_id>.<k>``. Each lane holds, renews and
records its own leases, fenced on its own id, exactly as separate workers would, and has
its own registry row. Stopping the worker stops every lane; a lane that fails stops the
others, and the worker reports that failure.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

from reproq.clock import Clock, SystemClock
from reproq.engine.background import InBackground
from reproq.engine.lane import Lane
from reproq.engine.metrics_sink import MetricsSink
from reproq.engine.options import (
    MIB,
    WorkerOptions,
    WorkerStats,
    default_worker_id,
)
from reproq.errors import ConfigError, ReproqError
from reproq.executors import Executor, make_executor

__all__ = [
    "MIB",
    "Worker",
    "WorkerOptions",
    "WorkerStats",
    "default_worker_id",
    "lane_options",
    "split",
]

log = logging.getLogger("reproq.worker")

_SUPERVISE_EVERY = 0.1
"""Seconds between the worker's looks at its lanes, when it has several."""


def split(total: int, parts: int) -> list[int]:
    """``total`` shared out as evenly as possible, larger shares first."""
    share, extra = divmod(total, parts)
    return [share + (1 if k < extra else 0) for k in range(parts)]


def lane_options(options: WorkerOptions) -> list[WorkerOptions]:
    """The options of each lane of a worker with ``options.connections`` lanes.

    Slots are split between the lanes, and so are the children of a ``process``
    executor, which belong to each lane's own executor.
    """
    lanes = options.connections
    slots = split(options.concurrency, lanes)
    children: list[int] | None = None
    processes = options.executor_options.get("processes")
    if isinstance(processes, int):
        children = split(processes, lanes)
    result = []
    for k in range(lanes):
        executor_options = dict(options.executor_options)
        if children is not None:
            executor_options["processes"] = max(children[k], 1)
        result.append(
            dataclasses.replace(
                options,
                worker_id=options.worker_id if k == 0 else f"{options.worker_id}.{k + 1}",
                concurrency=slots[k],
                connections=1,
                executor_options=executor_options,
            )
        )
    return result


class Worker(InBackground):
    """Executes task runs from the database at ``dsn`` as configured by ``options``.

    Each lane builds its executor from the options; ``executor`` hands one in instead
    (a worker with one connection only). ``metrics`` receives every claim and finished
    attempt. A worker runs once.
    """

    def __init__(
        self,
        dsn: str,
        options: WorkerOptions,
        *,
        clock: Clock | None = None,
        executor: Executor | None = None,
        metrics: MetricsSink | None = None,
    ) -> None:
        options.validate()
        if executor is not None and options.connections > 1:
            raise ConfigError(
                "an executor object serves one lane: leave it out and each of the "
                f"{options.connections} lanes builds its own from the options",
                key="connections",
            )
        self.dsn = dsn
        self.options = options
        self.worker_id = options.worker_id
        self.ready = threading.Event()
        """Set once every lane is registered, listening and taking tasks."""
        self.error: BaseException | None = None
        """Why :meth:`run` ended with an error, if it did (for :meth:`start` users)."""
        self._thread_name = f"reproq-worker-{self.worker_id}"
        self._started = False
        self._wake = threading.Event()
        self._ready_lock = threading.Lock()
        self._lanes_ready = 0
        the_clock = clock or SystemClock()
        self.lanes = [
            Lane(
                dsn,
                lane,
                clock=the_clock,
                executor=executor or make_executor(lane.executor, lane.executor_options),
                metrics=metrics,
                on_ready=self._lane_ready,
            )
            for lane in lane_options(options)
        ]
        """The lanes (internal: read them, do not drive them)."""

    def request_stop(self, force: bool = False) -> None:
        """Stop claiming and drain; a second call, or ``force``, gives leases back at once.

        Safe to call from any thread or a signal handler's thread.
        """
        for lane in self.lanes:
            lane.request_stop(force=force)
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return any(lane.stopping for lane in self.lanes)

    def stats(self) -> WorkerStats:
        """A snapshot of the worker's counters (its lanes' added up)."""
        return sum((lane.stats() for lane in self.lanes), WorkerStats())

    def run(self, stop: threading.Event | None = None) -> None:
        """Execute tasks until a stop is requested (or ``stop`` is set), then drain and return.

        Raises :class:`~reproq.errors.DatabaseError` / :class:`~reproq.errors.SchemaError`
        if the database is unreachable or not migrated at start, or the error of a lane
        that failed (the others are stopped then).
        """
        if self._started:
            raise ReproqError("a Worker runs only once; create a new one")
        self._started = True
        if len(self.lanes) == 1:
            self.lanes[0].run(stop)  # no supervision needed: the lane is the whole worker
            return
        for lane in self.lanes:
            lane.start()
        failure: BaseException | None = None
        try:
            while not all(lane.join(0) for lane in self.lanes):
                if stop is not None and stop.is_set() and not self.stopping:
                    self.request_stop()
                if failure is None:
                    failure = self._lane_error()
                    if failure is not None:
                        log.error("worker %s: a lane failed, stopping the others", self.worker_id)
                        self.request_stop()
                self._wake.wait(_SUPERVISE_EVERY)
                self._wake.clear()
        except BaseException:
            self.request_stop(force=True)
            raise
        failure = failure or self._lane_error()
        if failure is not None:
            raise failure

    def _lane_ready(self) -> None:
        with self._ready_lock:
            self._lanes_ready += 1
            if self._lanes_ready == len(self.lanes):
                self.ready.set()

    def _lane_error(self) -> BaseException | None:
        """The error of the first lane that ended on one, if any did."""
        return next((lane.error for lane in self.lanes if lane.error is not None), None)

    def _on_error(self, exc: BaseException) -> None:
        if len(self.lanes) == 1:
            log.error("worker %s stopped on an error: %s", self.worker_id, exc)
        else:  # the lane that failed has said so
            log.debug("worker %s ended on an error: %s", self.worker_id, exc)
