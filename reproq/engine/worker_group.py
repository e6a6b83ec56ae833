"""Several claim loops in one worker process, each on its own database connection.

A worker's connection carries one round trip at a time, and for short tasks the
database's work on that round trip sets the pace: the server spends one core at most on
it. With ``connections = N`` a worker runs N lanes, each a :class:`~reproq.engine.worker.Worker`
with its share of the slots, its own connection and its own control loop, so the server
works on N round trips at once.

Lane 1 keeps the worker id; lane k is ``<worker_id>.<k>``. Each lane holds, renews and
records its own leases, fenced on its own id, exactly as separate workers would, and has
its own registry row. Stopping the group stops every lane; a lane that fails stops the
others, and the group reports that failure.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import TYPE_CHECKING

from reproq.engine.worker import InBackground, Worker, WorkerOptions, WorkerStats
from reproq.errors import ReproqError

if TYPE_CHECKING:
    from reproq.engine.metrics_sink import MetricsSink

__all__ = ["WorkerGroup", "lane_options", "make_worker", "split"]

log = logging.getLogger("reproq.worker_group")

_SUPERVISE_EVERY = 0.1
"""Seconds between the group's looks at its lanes."""


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


class WorkerGroup(InBackground):
    """A worker with several lanes (see the module text); used like a :class:`Worker`.

    Run it in the calling thread with :meth:`run`, or in a background thread with
    :meth:`start` and :meth:`join`; stop it with :meth:`request_stop`.
    """

    def __init__(
        self, dsn: str, options: WorkerOptions, *, metrics: MetricsSink | None = None
    ) -> None:
        options.validate()
        self.options = options
        self.worker_id = options.worker_id
        self.lanes = [Worker(dsn, lane, metrics=metrics) for lane in lane_options(options)]
        self.ready = threading.Event()
        """Set once every lane is registered, listening and taking tasks."""
        self.error: BaseException | None = None
        """Why :meth:`run` ended with an error, if it did (for :meth:`start` users)."""
        self._wake = threading.Event()
        self._thread_name = f"reproq-worker-group-{self.worker_id}"
        self._started = False

    def request_stop(self, force: bool = False) -> None:
        """Stop every lane: drain first; a second call, or ``force``, gives leases back."""
        for lane in self.lanes:
            lane.request_stop(force=force)
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return any(lane.stopping for lane in self.lanes)

    def stats(self) -> WorkerStats:
        """The lanes' counters, added up."""
        totals = dict.fromkeys((f.name for f in dataclasses.fields(WorkerStats)), 0)
        for lane in self.lanes:
            for name, value in dataclasses.asdict(lane.stats()).items():
                totals[name] += value
        return WorkerStats(**totals)

    def run(self, stop: threading.Event | None = None) -> None:
        """Run every lane until a stop is requested (or ``stop`` is set) and all drained.

        Raises the first lane's error, if a lane failed (the others are stopped then).
        """
        if self._started:
            raise ReproqError("a WorkerGroup runs only once; create a new one")
        self._started = True
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
                if not self.ready.is_set() and all(lane.ready.is_set() for lane in self.lanes):
                    self.ready.set()
                self._wake.wait(_SUPERVISE_EVERY)
                self._wake.clear()
        except BaseException:
            self.request_stop(force=True)
            raise
        failure = failure or self._lane_error()
        if failure is not None:
            raise failure

    def _lane_error(self) -> BaseException | None:
        """The error of the first lane that ended on one, if any did."""
        return next((lane.error for lane in self.lanes if lane.error is not None), None)


def make_worker(
    dsn: str, options: WorkerOptions, *, metrics: MetricsSink | None = None
) -> Worker | WorkerGroup:
    """A :class:`Worker`, or a :class:`WorkerGroup` when ``options.connections`` > 1."""
    if options.connections > 1:
        return WorkerGroup(dsn, options, metrics=metrics)
    return Worker(dsn, options, metrics=metrics)
