"""A lane of a worker: one control loop on one database connection, with its own slots.

A :class:`~reproq.engine.worker.Worker` runs one lane per connection (the lane is
internal to it). The lane's control thread does all its database work on one
:class:`~reproq.engine.link.Link`:

- **claim** up to the number of free slots in one statement (:mod:`reproq.engine.claim`)
  when woken by NOTIFY (:mod:`reproq.engine.wakeup`), when a batch came back full, or
  when the fallback poll (with backoff) is due;
- **record** ended attempts in batches, one fenced UPDATE per round, in the same
  statement or transaction as the next claim (:mod:`reproq.engine.round_trip`,
  :mod:`reproq.engine.completion`, :mod:`reproq.engine.workflow_progress`); its
  :class:`~reproq.engine.ledger.Ledger` keeps the leases and what is owed for them;
- **heartbeat**: one statement per interval renews every lease and reports cancel
  requests and leases that are gone (:mod:`reproq.engine.lease`);
- **reclaim** expired leases of dead workers every ``reclaim_interval_seconds``
  (:mod:`reproq.engine.reclaim`);
- the **watchdog** of its :class:`~reproq.engine.slots.Slots` fails attempts past their
  deadline.

Database trouble never kills a task: statements are retried after a backoff on a new
connection, and only a lease that is really gone stops its task (and discards its
result). A stop drains: no more claims, running tasks get up to ``shutdown_timeout`` to
finish, then they are stopped and their leases given back (READY at once, attempt not
charged). A second, forced stop gives them back at once.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Callable

import psycopg

import reproq
from reproq.clock import Clock
from reproq.db import STATEMENT_ANSWER_GRACE, Conn, connect, first_line, redact_dsn
from reproq.engine import completion, round_trip
from reproq.engine.attempt import AllowList, AttemptPolicy
from reproq.engine.background import InBackground
from reproq.engine.claim import Claimer, ClaimResult
from reproq.engine.lease import WorkerRecord, give_back, register, renew
from reproq.engine.ledger import Ledger
from reproq.engine.link import Link
from reproq.engine.metrics_sink import MetricsSink
from reproq.engine.options import WorkerOptions, WorkerStats
from reproq.engine.reclaim import reclaim_expired
from reproq.engine.slots import Slots, Stop
from reproq.engine.wakeup import Listener
from reproq.errors import DatabaseError, ReproqError
from reproq.executors import Executor
from reproq.pg.migrations import require_current_schema
from reproq.queries import q

__all__ = ["Lane"]

log = logging.getLogger("reproq.worker")

_STOP_GRACE_SECONDS = 2.0
"""After a stop, how long stopped tasks get to return before their leases are given back."""

_FINAL_FLUSH_SECONDS = 15.0
"""How long a stopping lane keeps trying to reach the database to record what it has."""

_ABANDONED_HOLD = 10.0
"""An attempt still executing when the worker gives up on it (a thread cannot be killed)
is given back claimable only after this long: time for this process to exit, so the run
never executes twice at once."""

_MAX_WAIT = 1.0  # the control loop never sleeps longer, whatever the timers say
_RETRY_SOON = 0.05  # keyed rows another claimer held this round


class Lane(InBackground):
    """One control loop, its connection and its slots, as configured by ``options``.

    ``options`` are the lane's own (its worker id and its share of the slots, see
    :func:`reproq.engine.worker.lane_options`). ``on_ready`` is called once the lane is
    registered, listening and taking tasks. A lane runs once.
    """

    def __init__(
        self,
        dsn: str,
        options: WorkerOptions,
        *,
        clock: Clock,
        executor: Executor,
        metrics: MetricsSink | None,
        on_ready: Callable[[], None],
    ) -> None:
        self.dsn = dsn
        self.options = options
        self.worker_id = options.worker_id
        self.clock = clock
        self._on_ready = on_ready
        self.policy = AttemptPolicy(
            worker_id=options.worker_id,
            allow=AllowList(options.allowed_task_modules),
            max_payload_bytes=options.max_payload_bytes,
            max_output_bytes=options.max_output_bytes,
            logs_dir=options.logs_dir,
            max_timeout_seconds=options.max_timeout_seconds,
        )
        self.record = WorkerRecord(
            worker_id=options.worker_id,
            hostname=socket.gethostname(),
            concurrency=options.concurrency,
            queues=options.queues,
            version=reproq.__version__,
        )
        self._claimer = Claimer(
            worker_id=options.worker_id,
            queues=options.queues,
            lease_seconds=options.lease_seconds,
            priority_aging_factor=options.priority_aging_factor,
        )
        self._link = Link(self._connect, name=f"worker {options.worker_id}", log=log)
        self._listener: Listener | None = None
        self._thread_name = f"reproq-worker-{self.worker_id}"
        self._started = False
        self._finished = threading.Event()
        self._wake = threading.Event()
        self._metrics = metrics
        self._slots = Slots(executor, self.policy, clock, self._wake, metrics)
        self._ledger = Ledger(self.policy, clock, metrics)
        self._hint = True
        self._stop_level = 0  # 0 running, 1 draining, 2 forced

        self._poll_at = 0.0
        self._due_checked_at = 0.0
        self._poll_delay = options.poll_interval
        self._beat_at = 0.0
        self._reclaim_at = 0.0
        self._drain_deadline: float | None = None
        self._kill_deadline: float | None = None

    # -- control -----------------------------------------------------------------------

    def request_stop(self, force: bool = False) -> None:
        """Stop claiming and drain; a second call, or ``force``, gives leases back at once.

        Safe to call from any thread.
        """
        self._stop_level = 2 if force or self._stop_level >= 1 else 1
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop_level > 0

    def stats(self) -> WorkerStats:
        """A snapshot of the lane's counters."""
        return self._ledger.stats(running=len(self._slots.busy))

    def run(self, stop: threading.Event | None = None) -> None:
        """Execute tasks until a stop is requested (or ``stop`` is set), then drain and return.

        Raises :class:`~reproq.errors.DatabaseError` / :class:`~reproq.errors.SchemaError`
        if the database is unreachable or not migrated at start.
        """
        if self._started:
            raise ReproqError("a worker lane runs only once")
        self._started = True
        if stop is not None:
            threading.Thread(
                target=self._watch, args=(stop,), name="reproq-worker-stop", daemon=True
            ).start()
        try:
            self._startup()
            self._on_ready()
            self._loop()
        finally:
            self._teardown()
            self._finished.set()

    # -- lifecycle ---------------------------------------------------------------------

    def _on_error(self, exc: BaseException) -> None:
        log.error("worker %s stopped on an error: %s", self.worker_id, exc)

    def _watch(self, stop: threading.Event) -> None:
        while not stop.wait(0.2):
            if self._finished.is_set():
                return
        self.request_stop()

    def _startup(self) -> None:
        conn = self._link.get()
        try:
            require_current_schema(conn)
            # Threads and the executor first: a worker that cannot run (the machine refuses
            # its threads) must not appear in the registry.
            self._slots.start(self.options.concurrency)
            register(conn, self.record)
        except psycopg.Error as exc:
            self._link.drop()
            raise DatabaseError(first_line(str(exc))) from exc
        except BaseException:
            self._link.drop()
            raise
        opts = self.options
        self._listener = Listener(
            self.dsn,
            opts.queues,
            self._on_notify,
            application_name=f"reproq-listen {self.worker_id}"[:63],
        )
        self._listener.start()
        log.info(
            "worker %s started on %s: queues=%s concurrency=%d executor=%s lease=%gs heartbeat=%gs "
            "reclaim=%gs aging=%g shutdown_timeout=%gs allowed=%s",
            self.worker_id,
            redact_dsn(self.dsn),
            ",".join(opts.queues),
            opts.concurrency,
            self._slots.executor.name,
            opts.lease_seconds,
            opts.heartbeat_seconds,
            opts.reclaim_interval_seconds,
            opts.priority_aging_factor,
            opts.shutdown_timeout,
            ",".join(opts.allowed_task_modules),
        )
        now = time.monotonic()
        self._beat_at = now + opts.heartbeat_seconds
        # Recover what crashed workers left right away (unless reclaiming is switched off
        # with an infinite interval).
        interval = opts.reclaim_interval_seconds
        self._reclaim_at = now if math.isfinite(interval) else math.inf

    def _teardown(self) -> None:
        if self._listener is not None:
            self._listener.stop()
        self._slots.stop()
        self._link.drop()
        c = self._ledger.counts
        log.info(
            "worker %s stopped: %d claimed, %d succeeded, %d retried, %d failed, "
            "%d given back, %d lease lost",
            self.worker_id,
            c.claimed,
            c.succeeded,
            c.retried,
            c.failed,
            c.given_back,
            c.lease_lost,
        )

    def _on_notify(self) -> None:
        self._hint = True
        self._wake.set()

    # -- the control loop --------------------------------------------------------------

    def _loop(self) -> None:
        opts = self.options
        link = self._link
        slots = self._slots
        ledger = self._ledger
        while True:
            self._wake.clear()
            now = time.monotonic()
            self._collect()
            if self._stop_level and self._shutdown_step(now):
                return
            self._watchdog(now)
            free = 0 if self._stop_level else opts.concurrency - len(slots.busy)
            want_claim = free > 0 and (self._hint or now >= self._poll_at)
            again = False
            db_ready = now >= link.retry_at
            if db_ready and (want_claim or ledger.owing):
                again = self._sync(min(free, opts.claim_batch) if want_claim else 0)
            if now >= self._beat_at and now >= link.retry_at:
                self._heartbeat(now)
            if now >= self._reclaim_at and now >= link.retry_at and not self._stop_level:
                self._reclaim(now)
            if again or slots.has_finished:
                continue
            if self._stop_level and not (slots.busy or ledger.pending or ledger.giveback):
                continue  # nothing left: the next round ends the loop
            self._wake.wait(self._sleep_for(now, free))

    def _sleep_for(self, now: float, free: int) -> float:
        # Database work waits for the link's backoff after trouble as well as for its own
        # timer. A timer already due whose work the backoff holds back would otherwise
        # wake the loop at once, again and again until the retry: measured, a worker whose
        # database refused connections spun at 80% of a core for the whole outage.
        retry_at = self._link.retry_at
        wake_at = min(max(self._beat_at, retry_at), now + _MAX_WAIT)
        if not self._stop_level:
            wake_at = min(wake_at, max(self._reclaim_at, retry_at))
            if free > 0:
                # Woken by NOTIFY: claim as soon as the database may be tried again.
                claim_at = retry_at if self._hint else max(self._poll_at, retry_at)
                wake_at = min(wake_at, claim_at)
        wake_at = min(wake_at, self._slots.next_deadline())
        for deadline in (self._drain_deadline, self._kill_deadline):
            if deadline is not None:
                wake_at = min(wake_at, deadline)
        if self._ledger.pending or self._ledger.giveback:
            wake_at = min(wake_at, self._link.retry_at)
        return max(wake_at - now, 0.0)

    def _collect(self) -> None:
        """Take what the slots handed back."""
        ledger = self._ledger
        for attempt, result in self._slots.finished():
            ledger.ended(attempt, result)

    def _sync(self, n: int) -> bool:
        """Record what ended, give back what must be, and claim up to ``n`` rows.

        The common case is one statement, and so one round trip and one commit: the lean
        claim records the completions too. Otherwise the statements and the COMMIT go out
        together in pipeline mode, still one round trip. Returns True when another round
        should follow at once (a full batch came back).
        """
        ledger = self._ledger
        pending, giveback, wake_queues = ledger.take()
        if self._stop_level:
            n = 0  # a stop requested since this round began: claim nothing more
        if n:
            # Consumed before the claim: a NOTIFY arriving during it sets the hint again.
            self._hint = False
        applied: set[int] = set()
        returned: set[int] = set()
        first: ClaimResult | None = None
        began = time.monotonic()
        try:
            conn = self._db()
            claimer = self._claimer
            in_transaction = completion.needs_transaction(pending)
            if claimer.lean and not giveback and not wake_queues and not in_transaction:
                first = claimer.read(claimer.send(conn, n, completion.encode(pending)))
                applied = set(first.finished)
            else:
                finish_cur = claim_cur = None
                with conn.pipeline(), conn.transaction():
                    if pending:
                        if in_transaction:
                            applied = completion.flush(conn, self.worker_id, pending)
                        else:
                            finish_cur = completion.send(conn, self.worker_id, pending)
                    if wake_queues:
                        conn.execute(q("worker_notify"), {"queues": sorted(wake_queues)})
                    if giveback:
                        returned = give_back(
                            conn,
                            self.worker_id,
                            [a.lease for a in giveback],
                            holds=[_ABANDONED_HOLD if a.abandoned else 0.0 for a in giveback],
                        )
                    if n:
                        claim_cur = claimer.send(conn, n)
                if finish_cur is not None:
                    applied = round_trip.applied_ids(finish_cur)
                if claim_cur is not None:
                    first = claimer.read(claim_cur)
        except psycopg.Error as exc:
            ledger.put_back(pending, giveback, wake_queues)
            if pending and not self._link.transient(exc):
                ledger.record_each(self._db, self._link.transient)
            self._db_trouble(exc)
            return False
        self._link.ok()
        if self._metrics is not None and (n or pending):
            self._metrics.db_operation(
                "claim" if n else "complete",
                time.monotonic() - began,
                self.options.queues if n else (),
            )
        ledger.recorded(pending, applied)
        ledger.given_back(giveback, returned)
        if first is None or not n:
            return False
        result = first
        if first.partial and len(first.rows) < n:
            try:
                result = self._claimer.claim_rest(conn, first, n)
            except psycopg.Error as exc:
                self._db_trouble(exc)
                result = first
        for attempt in ledger.claimed(result.rows):
            self._slots.dispatch(attempt)
        return self._after_claim(n, len(result.rows), result.limited, result.deferred)

    def _after_claim(self, n: int, got: int, limited: bool, deferred: bool) -> bool:
        """Schedule the next claim; True when it should happen right away."""
        now = time.monotonic()
        if got >= n and not limited:
            self._hint = True
            self._poll_delay = self.options.poll_interval
            return True
        if got:
            self._poll_delay = self.options.poll_interval
        listening = self._listener is not None and self._listener.connected
        delay = self._poll_delay
        if listening:
            self._poll_delay = min(self._poll_delay * 2, self.options.max_poll_interval)
        if limited:
            delay = min(delay, 0.25)
        if deferred:
            delay = min(delay, _RETRY_SOON)
        self._poll_at = now + delay
        if not limited and not deferred and delay > _RETRY_SOON and now >= self._due_checked_at:
            self._due_checked_at = now + min(delay, 1.0)
            due = self._next_due()
            if due is not None:
                self._poll_at = min(self._poll_at, now + max(due, 0.0))
        return False

    def _next_due(self) -> float | None:
        """Seconds until the earliest scheduled row of our queues is due, if any."""
        try:
            row = self._db().execute(q("worker_next_due"), {"queues": list(self.options.queues)})
            due = row.fetchone()
        except psycopg.Error as exc:
            self._db_trouble(exc)
            return None
        if not due or due["seconds"] is None:
            return None
        return float(due["seconds"])

    # -- heartbeat, reclaim, watchdog --------------------------------------------------

    def _heartbeat(self, now: float) -> None:
        attempts = list(self._ledger.leases.values())
        began = time.monotonic()
        try:
            renewal = renew(
                self._db(), self.record, [a.lease for a in attempts], self.options.lease_seconds
            )
        except psycopg.Error as exc:
            # The tasks keep running: leases are long enough to survive a missed beat.
            self._db_trouble(exc)
            self._beat_at = now + min(self.options.heartbeat_seconds, self._link.backoff)
            return
        self._link.ok()
        if self._metrics is not None:
            self._metrics.db_operation("heartbeat", time.monotonic() - began)
        self._beat_at = now + self.options.heartbeat_seconds
        busy = self._slots.busy
        for attempt in attempts:
            rid = attempt.lease.result_id
            if rid not in renewal.renewed:
                if attempt in busy and attempt.stop is None:
                    log.warning(
                        "task %s attempt %d: lease lost; stopping it and discarding its result",
                        rid,
                        attempt.lease.attempt,
                    )
                    attempt.stop = Stop.LEASE_LOST
                    attempt.cancel.set()
            elif rid in renewal.cancel_requested and attempt.stop is None:
                log.info("task %s: cancel requested; stopping it", rid)
                attempt.stop = Stop.CANCEL
                attempt.cancel.set()

    def _reclaim(self, now: float) -> None:
        began = time.monotonic()
        try:
            result = reclaim_expired(
                self._db(), worker_id=self.worker_id, held=self._ledger.leases.keys()
            )
        except psycopg.Error as exc:
            self._db_trouble(exc)
            self._reclaim_at = now + min(self.options.reclaim_interval_seconds, self._link.backoff)
            return
        self._link.ok()
        if self._metrics is not None:
            self._metrics.db_operation("reclaim", time.monotonic() - began)
        self._ledger.counts.reclaimed += result.count
        self._reclaim_at = now + self.options.reclaim_interval_seconds
        if result.count:
            log.warning(
                "reclaimed %d expired lease(s): %d back to READY, %d FAILED (attempts used up)",
                result.count,
                len(result.requeued),
                len(result.failed),
            )
            self._hint = True

    def _watchdog(self, now: float) -> None:
        """Record the attempts the slots gave up on past their deadline as failed."""
        for attempt in self._slots.overdue(now):
            self._ledger.timed_out(attempt)

    # -- shutdown ----------------------------------------------------------------------

    def _shutdown_step(self, now: float) -> bool:
        """Advance the drain; True once the loop may end."""
        busy = self._slots.busy
        if self._drain_deadline is None:
            timeout = 0.0 if self._stop_level >= 2 else self.options.shutdown_timeout
            self._drain_deadline = now + timeout
            log.info(
                "worker %s stopping: %d task(s) running, waiting up to %gs",
                self.worker_id,
                len(busy),
                timeout,
            )
        forced = self._stop_level >= 2
        if busy and self._kill_deadline is None and (forced or now >= self._drain_deadline):
            for attempt in busy:
                if attempt.stop is None:
                    attempt.stop = Stop.SHUTDOWN
                attempt.cancel.set()
            self._kill_deadline = now + (0.0 if forced else _STOP_GRACE_SECONDS)
        if busy and self._kill_deadline is not None and (forced or now >= self._kill_deadline):
            self._abandon_running()
        if busy:
            return False
        ledger = self._ledger
        if not ledger.owing:
            return True
        # Keep trying to record what we have, but not forever.
        down_since = self._link.down_since
        if down_since is not None and now - down_since > _FINAL_FLUSH_SECONDS:
            log.error(
                "worker %s: database unreachable; %d outcome(s) not recorded (their leases "
                "will expire and the runs be reclaimed)",
                self.worker_id,
                len(ledger.pending) + len(ledger.giveback),
            )
            return True
        return False

    def _abandon_running(self) -> None:
        """Give back the leases of attempts that did not stop in time."""
        for attempt in list(self._slots.busy):
            if not self._slots.abandon(attempt):
                continue
            self._ledger.giveback.append(attempt)
            log.warning(
                "task %s attempt %d did not stop; giving its lease back, claimable in %gs",
                attempt.lease.result_id,
                attempt.lease.attempt,
                _ABANDONED_HOLD,
            )

    # -- database ----------------------------------------------------------------------

    def _connect(self) -> Conn:
        # A server that has not answered by the end of its own statement_timeout is frozen
        # or cut off: give the connection up then, and carry on on a new one.
        timeout = self.options.statement_timeout
        conn = connect(
            self.dsn,
            application_name=f"reproq-worker {self.worker_id}"[:63],
            answer_timeout=timeout + STATEMENT_ANSWER_GRACE if timeout > 0 else None,
        )
        try:
            conn.execute(
                q("worker_session_setup"),
                {"statement_timeout": f"{int(timeout * 1000)}ms"},
            )
        except psycopg.Error as exc:
            conn.close()
            raise DatabaseError(first_line(str(exc))) from exc
        return conn

    def _db(self) -> Conn:
        """The control connection, reconnecting if it was lost."""
        try:
            return self._link.get()
        except DatabaseError as exc:
            raise psycopg.OperationalError(str(exc)) from exc

    def _db_trouble(self, exc: BaseException) -> None:
        retry_in = self._link.trouble(exc)
        log.warning(
            "database trouble on %s (%s); retrying in %.1fs; running tasks continue",
            redact_dsn(self.dsn),
            first_line(str(exc)) or type(exc).__name__,
            retry_in,
        )
