"""A lane's ledger: the leases it holds, and what it still owes the database about them.

Every claimed row is entered as an :class:`~reproq.engine.slots.Attempt` and stays until
the database has its outcome: a :class:`~reproq.engine.completion.Completion` waiting in
:attr:`Ledger.pending`, or a lease to return unfinished in :attr:`Ledger.giveback`.
Queues whose keyed rows ended are in :attr:`Ledger.wake_queues` (other workers may be
waiting for the key). The lane's round trip takes what is owed (:meth:`Ledger.take`) and
reports what the database applied (:meth:`Ledger.recorded`), or hands it back to try
again (:meth:`Ledger.put_back`). The ledger keeps the lane's counters and reports to its
metrics sink as it goes. The lane's control thread owns it.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

import psycopg

from reproq.clock import Clock
from reproq.db import Conn, first_line
from reproq.engine import completion
from reproq.engine.attempt import AttemptPolicy, failure_completion
from reproq.engine.claim import ClaimedRow
from reproq.engine.completion import Completion
from reproq.engine.lease import Lease
from reproq.engine.metrics_sink import MetricsSink
from reproq.engine.options import WorkerStats
from reproq.engine.slots import Attempt, Handback, Result, Stop
from reproq.models import ErrorKind, TaskStatus

__all__ = ["Ledger"]

log = logging.getLogger("reproq.worker")


class Ledger:
    """The leases of the worker ``policy.worker_id`` and the outcomes owed for them."""

    def __init__(self, policy: AttemptPolicy, clock: Clock, metrics: MetricsSink | None) -> None:
        self.worker_id = policy.worker_id
        self.policy = policy
        self.clock = clock
        self._metrics = metrics
        self.counts = WorkerStats()
        """What the lane has done so far."""
        self.leases: dict[int, Attempt] = {}  # every lease held, running or not yet recorded
        self.pending: list[Completion] = []
        self.giveback: list[Attempt] = []
        self.wake_queues: set[str] = set()  # notify these after the next round

    @property
    def owing(self) -> bool:
        """Whether the next round has something to tell the database."""
        return bool(self.pending or self.giveback or self.wake_queues)

    def stats(self, running: int) -> WorkerStats:
        """A snapshot of the counters, with ``running`` attempts in the slots."""
        return replace(self.counts, running=running, held=len(self.leases))

    def claimed(self, rows: Sequence[ClaimedRow]) -> list[Attempt]:
        """Enter newly claimed rows; their attempts, for the slots."""
        self.counts.claimed += len(rows)
        if self._metrics is not None:
            for queue_name, count in collections.Counter(r.queue_name for r in rows).items():
                self._metrics.task_claimed(queue_name, count)
        leases = self.leases
        attempts = []
        for row in rows:
            attempt = Attempt(row)
            leases[row.result_id] = attempt
            attempts.append(attempt)
        return attempts

    def ended(self, attempt: Attempt, result: Result) -> None:
        """Enter what a slot handed back for ``attempt``."""
        if result is Handback.DISCARD:
            self.leases.pop(attempt.lease.result_id, None)
            self.counts.lease_lost += 1
        elif result is Handback.GIVE_BACK:
            self.giveback.append(attempt)
        else:
            self.pending.append(result)
            if attempt.row.keyed:
                self.wake_queues.add(attempt.row.queue_name)

    def timed_out(self, attempt: Attempt) -> None:
        """Enter an attempt the watchdog gave up on as failed (its thread runs on)."""
        self.counts.timed_out += 1
        timeout = attempt.timeout_seconds
        log.warning(
            "task %s attempt %d: timeout after %ss; its thread is abandoned",
            attempt.lease.result_id,
            attempt.lease.attempt,
            timeout,
        )
        self.pending.append(
            failure_completion(
                attempt.lease,
                ErrorKind.INFRA_ERROR,
                f"timeout after {timeout}s (timeout_seconds)",
                self.policy,
                at=self.clock.now().isoformat(),
            )
        )

    def take(self) -> tuple[list[Completion], list[Attempt], set[str]]:
        """What is owed, for one round: outcomes, leases to give back, queues to wake."""
        owed = (self.pending, self.giveback, self.wake_queues)
        self.pending, self.giveback, self.wake_queues = [], [], set()
        return owed

    def put_back(
        self, pending: list[Completion], giveback: list[Attempt], wake_queues: set[str]
    ) -> None:
        """Owe again what a failed round took, ahead of what came since."""
        self.pending = pending + self.pending
        self.giveback = giveback + self.giveback
        self.wake_queues |= wake_queues

    def recorded(self, pending: Sequence[Completion], applied: set[int]) -> None:
        """Settle outcomes sent to the database; ``applied``: those whose lease still held."""
        lost = 0
        counts = self.counts
        metrics = self._metrics
        for c in pending:
            attempt = self.leases.pop(c.result_id, None)
            if metrics is not None and attempt is not None and c.result_id in applied:
                metrics.task_finished(
                    attempt.row.queue_name,
                    _processed_status(c, attempt),
                    attempt.ran_for,
                    worker_id=self.worker_id,
                    row=attempt.row,
                    completion=c,
                )
            if c.result_id not in applied:
                lost += 1
            elif c.status == TaskStatus.SUCCESSFUL:
                counts.succeeded += 1
            elif c.status == TaskStatus.READY:
                counts.retried += 1
            else:
                counts.failed += 1
        if lost:
            counts.lease_lost += lost
            log.warning(
                "%d result(s) discarded: their lease was no longer held by %s",
                lost,
                self.worker_id,
            )

    def given_back(self, giveback: Sequence[Attempt], returned: set[int]) -> None:
        """Settle leases returned unfinished; ``returned``: those the database took back."""
        for attempt in giveback:
            self.leases.pop(attempt.lease.result_id, None)
        self.counts.given_back += len(returned)

    def record_each(
        self, db: Callable[[], Conn], transient: Callable[[BaseException], bool]
    ) -> None:
        """The database refused a batch as a whole: record :attr:`pending` row by row,
        replacing any row that cannot be stored by a failure saying why. Rows that met a
        ``transient`` problem stay pending."""
        left: list[Completion] = []
        for c in self.pending:
            try:
                applied = completion.flush(db(), self.worker_id, [c])
            except psycopg.Error as exc:
                if transient(exc):
                    left.append(c)
                    continue
                log.error("task %s: outcome could not be stored: %s", c.result_id, exc)
                fallback = failure_completion(
                    self.leases[c.result_id].lease
                    if c.result_id in self.leases
                    else Lease(result_id=c.result_id, attempt=c.attempt, max_attempts=c.attempt),
                    ErrorKind.INFRA_ERROR,
                    f"the outcome could not be stored: {first_line(str(exc))}",
                    self.policy,
                    at=self.clock.now().isoformat(),
                )
                try:
                    applied = completion.flush(
                        db(), self.worker_id, [replace(fallback, logs_uri=None)]
                    )
                except psycopg.Error as exc2:
                    log.error("task %s: dropping its outcome (%s)", c.result_id, exc2)
                    self.leases.pop(c.result_id, None)
                    continue
                self.recorded([fallback], applied)
                continue
            self.recorded([c], applied)
        self.pending = left


def _processed_status(completion: Completion, attempt: Attempt) -> str:
    """The ``status`` label of ``reproq_tasks_processed_total`` for a recorded attempt."""
    if completion.status == TaskStatus.SUCCESSFUL:
        return "success"
    if completion.status == TaskStatus.READY:
        return "retry"
    return "cancelled" if attempt.stop is Stop.CANCEL else "failure"
