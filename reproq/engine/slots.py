"""Slots: the threads of a lane that execute attempts, and the watchdog over them.

A lane hands each claimed row to :meth:`Slots.dispatch` as an :class:`Attempt`. A slot
thread turns it into a call (:mod:`reproq.engine.attempt`), runs it through the
:class:`~reproq.executors.base.Executor` and hands back a
:class:`~reproq.engine.completion.Completion`, or a :class:`Handback` when the result
must not be recorded. The lane collects them with :meth:`Slots.finished` and wakes on
``wake``.

To stop an attempt the lane sets its :attr:`Attempt.stop` reason and its cancel flag.
An attempt that does not return (past its deadline, or not stopping at shutdown) is
*abandoned*: its thread cannot be killed, so it is left to finish on its own, its
result is thrown away, and (past a deadline) a fresh thread takes its slot, so a stuck
task never costs capacity for good.
"""

from __future__ import annotations

import collections
import enum
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator

from reproq.clock import Clock
from reproq.engine.attempt import (
    AttemptPolicy,
    Refusal,
    cancelled_completion,
    failure_completion,
    outcome_completion,
    prepare_call,
)
from reproq.engine.claim import ClaimedRow
from reproq.engine.completion import Completion
from reproq.engine.lease import Held
from reproq.engine.metrics_sink import MetricsSink
from reproq.errors import ConfigError
from reproq.executors import Executor
from reproq.models import ErrorKind

__all__ = ["Attempt", "CancelFlag", "Handback", "Slots", "Stop"]

log = logging.getLogger("reproq.worker")


class Stop(enum.Enum):
    """Why the lane asked a running attempt to stop."""

    CANCEL = "cancel"  # an operator requested it
    LEASE_LOST = "lease_lost"  # the lease is gone: the result would be discarded anyway
    SHUTDOWN = "shutdown"  # the worker is stopping: give the lease back
    TIMEOUT = "timeout"  # past the deadline: already recorded as failed


class Handback(enum.Enum):
    """What a slot hands back instead of a completion."""

    DISCARD = "discard"  # nothing to record: the lease is gone
    GIVE_BACK = "give_back"  # stopped for shutdown: return the lease unfinished


class CancelFlag:
    """A :class:`~reproq.executors.base.CancelCheck` that costs almost nothing to create.

    One is made per attempt and rarely set; the event behind :meth:`wait` exists only for
    executors that block on it.
    """

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        """True once the attempt must stop."""
        return self._set

    def set(self) -> None:
        """Ask the attempt to stop."""
        self._set = True  # written before the event is read; wait() does the reverse
        event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until set or ``timeout`` passes; whether it is set."""
        if self._event is None:
            self._event = threading.Event()
        if self._set:
            return True
        return self._event.wait(timeout)


class Attempt:
    """A claimed row from claim to record; the lane's control thread owns it once dispatched."""

    __slots__ = (
        "abandoned",
        "cancel",
        "deadline",
        "finished",
        "lease",
        "ran_for",
        "row",
        "stop",
        "timeout_seconds",
    )

    def __init__(self, row: ClaimedRow) -> None:
        self.row = row
        self.lease: Held = row  # the claimed row carries the fencing token
        self.cancel = CancelFlag()
        self.stop: Stop | None = None
        self.deadline = math.inf  # set by the slot once the call is built
        self.timeout_seconds: float = float(row.timeout_seconds or 0)
        self.finished = False
        self.abandoned = False
        self.ran_for: float | None = None  # seconds in the executor (for metrics)


Result = Completion | Handback
"""What a slot hands back for one attempt."""


class Slots:
    """Threads executing attempts through ``executor``, each ended one announced on ``wake``.

    :meth:`dispatch`, :meth:`finished`, :meth:`abandon` and :meth:`overdue` belong to the
    lane's control thread.
    """

    def __init__(
        self,
        executor: Executor,
        policy: AttemptPolicy,
        clock: Clock,
        wake: threading.Event,
        metrics: MetricsSink | None = None,
    ) -> None:
        self.executor = executor
        self._metrics = metrics
        self.policy = policy
        self.clock = clock
        self.grace = float(getattr(executor, "deadline_grace_seconds", 15.0))
        """Seconds past an attempt's deadline before the watchdog gives up on it."""
        self.busy: set[Attempt] = set()
        """Attempts in a slot (not abandoned)."""
        self.abandoned_any = False
        self._wake = wake
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[Attempt | None] = queue.SimpleQueue()
        self._done: collections.deque[tuple[Attempt, Result]] = collections.deque()
        self._threads: list[threading.Thread] = []
        self._seq = 0

    def start(self, count: int) -> None:
        """Start the executor and ``count`` slot threads.

        A clear :class:`~reproq.errors.ConfigError` when the operating system refuses a
        thread (a thread or memory limit).
        """
        self.executor.start()
        try:
            for _ in range(count):
                self._spawn()
        except RuntimeError as exc:  # "can't start new thread"
            raise ConfigError(
                f"cannot start {count} slot threads ({exc}) after {len(self._threads)}: "
                "lower it, or raise the process's thread and memory limits",
                key="concurrency",
            ) from None

    def stop(self) -> None:
        """End the slot threads once idle and shut the executor down.

        The executor is not waited for when an attempt was abandoned: it may never return.
        """
        for _ in self._threads:
            self._work.put(None)
        try:
            self.executor.shutdown(wait=not self.abandoned_any)
        except Exception as exc:  # shutdown trouble must not hide how the run ended
            log.warning("executor shutdown failed: %s", exc)

    def dispatch(self, attempt: Attempt) -> None:
        """Queue ``attempt`` for the next free slot."""
        self.busy.add(attempt)
        self._work.put(attempt)

    @property
    def has_finished(self) -> bool:
        """Whether attempts are waiting to be collected with :meth:`finished`."""
        return bool(self._done)

    def finished(self) -> Iterator[tuple[Attempt, Result]]:
        """The attempts that ended since the last call, with what their slot handed back."""
        done = self._done
        while done:
            attempt, result = done.popleft()
            self.busy.discard(attempt)
            yield attempt, result

    def abandon(self, attempt: Attempt) -> bool:
        """Give up on a running attempt; False if it has just finished after all."""
        with self._lock:
            if attempt.finished:
                return False
            attempt.abandoned = True
        self.busy.discard(attempt)
        self.abandoned_any = True
        return True

    def overdue(self, now: float) -> list[Attempt]:
        """The watchdog: abandon attempts past their deadline and replace their threads.

        Each is stopped with reason :attr:`Stop.TIMEOUT`; the lane records the failure.
        """
        late = [a for a in self.busy if now >= a.deadline + self.grace]
        given_up = []
        for attempt in late:
            if not self.abandon(attempt):
                continue
            attempt.stop = Stop.TIMEOUT
            attempt.cancel.set()
            given_up.append(attempt)
            self._spawn()
        return given_up

    def next_deadline(self) -> float:
        """The earliest instant the watchdog must look again (``inf``: none)."""
        return min((a.deadline for a in self.busy), default=math.inf) + self.grace

    def _spawn(self) -> None:
        self._seq += 1
        thread = threading.Thread(target=self._slot, name=f"reproq-slot-{self._seq}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _slot(self) -> None:
        work = self._work
        done = self._done
        wake = self._wake
        lock = self._lock
        while True:
            attempt = work.get()
            if attempt is None:
                return
            result = self._execute(attempt)
            with lock:
                if attempt.abandoned:
                    return  # the watchdog gave up on it and started another thread
                attempt.finished = True
            done.append((attempt, result))
            wake.set()

    def _execute(self, attempt: Attempt) -> Result:
        """Run one attempt in this slot thread; never raises."""
        policy = self.policy
        try:
            prepared = prepare_call(attempt.row, policy)
            if isinstance(prepared, Refusal):
                return failure_completion(
                    attempt.lease, prepared.kind, prepared.message, policy, at=self._at()
                )
            attempt.deadline = prepared.deadline
            attempt.timeout_seconds = prepared.timeout_seconds
            if self._metrics is not None:
                self._metrics.task_started(policy.worker_id, attempt.row, prepared.task_path)
            try:
                started = time.monotonic()
                try:
                    outcome = self.executor.run(prepared, attempt.cancel)
                finally:
                    attempt.ran_for = time.monotonic() - started
            except Exception as exc:  # an executor bug must not lose the attempt
                log.exception("executor %s raised", self.executor.name)
                return failure_completion(
                    attempt.lease,
                    ErrorKind.INFRA_ERROR,
                    f"executor {self.executor.name} failed: {exc}",
                    policy,
                    at=self._at(),
                    exception_class=type(exc).__name__,
                )
            stop = attempt.stop
            if stop is not None and not outcome.ok:
                if stop is Stop.LEASE_LOST or stop is Stop.TIMEOUT:
                    return Handback.DISCARD
                if stop is Stop.SHUTDOWN:
                    return Handback.GIVE_BACK
                return cancelled_completion(attempt.lease, outcome, policy, at=self._at())
            if stop is Stop.LEASE_LOST:
                return Handback.DISCARD
            return outcome_completion(attempt.lease, outcome, policy, at=self._at)
        except Exception as exc:  # last line of defence: record the attempt as an infra error
            log.exception("task %s: unexpected error in the slot", attempt.lease.result_id)
            return failure_completion(
                attempt.lease,
                ErrorKind.INFRA_ERROR,
                f"worker error: {exc}",
                policy,
                at=self._at(),
            )

    def _at(self) -> str:
        return self.clock.now().isoformat()
