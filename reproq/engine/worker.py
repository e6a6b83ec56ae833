"""The worker engine: claims task runs, executes them in slots, records how they ended.

A :class:`Worker` owns one control thread (:meth:`Worker.run`) and ``concurrency`` slot
threads. The control thread does all database work on one connection:

- **claim** up to the number of free slots in one statement (:mod:`reproq.engine.claim`) when
  woken by NOTIFY (:mod:`reproq.engine.wakeup`), when a batch came back full, or when the
  fallback poll (with backoff) is due;
- **finish** ended attempts in batches, one fenced UPDATE per flush, in the same
  transaction as the next claim (:mod:`reproq.engine.completion`,
  :mod:`reproq.engine.workflow_progress`);
- **heartbeat**: one statement per interval renews every lease and reports cancel
  requests and leases that are gone (:mod:`reproq.engine.lease`);
- **reclaim** expired leases of dead workers every ``reclaim_interval_seconds``
  (:mod:`reproq.engine.reclaim`);
- a **watchdog** fails attempts past their deadline and replaces their slot thread, so a
  stuck task never costs capacity for good.

Slot threads turn claimed rows into calls (:mod:`reproq.engine.attempt`), run them through the
:class:`~reproq.executors.base.Executor` and hand back completions.

Database trouble never kills a task: statements are retried after a backoff on a new
connection, and only a lease that is really gone stops its task (and discards its
result). :meth:`Worker.request_stop` drains: no more claims, running tasks get up to
``shutdown_timeout`` to finish, then they are stopped and their leases given back (READY
at once, attempt not charged). A second, forced request gives them back at once.

The worker installs no signal handlers: the CLI (or the runtime) calls
:meth:`~Worker.request_stop`.
"""

from __future__ import annotations

import abc
import collections
import enum
import logging
import math
import os
import queue
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import psycopg

import reproq
from reproq.clock import Clock, SystemClock
from reproq.db import Conn, first_line, redact_dsn
from reproq.engine import completion
from reproq.engine.attempt import (
    AllowList,
    AttemptPolicy,
    Refusal,
    cancelled_completion,
    failure_completion,
    outcome_completion,
    prepare_call,
)
from reproq.engine.claim import ClaimedRow, Claimer, ClaimResult
from reproq.engine.completion import Completion, flush
from reproq.engine.lease import Held, Lease, WorkerRecord, give_back, register, renew
from reproq.engine.reclaim import reclaim_expired
from reproq.engine.wakeup import Listener
from reproq.errors import ConfigError, DatabaseError, ReproqError
from reproq.executors import Executor, make_executor
from reproq.models import ErrorKind, TaskStatus
from reproq.pg.migrations import require_current_schema
from reproq.queries import q

if TYPE_CHECKING:
    from reproq.engine.metrics_sink import MetricsSink

__all__ = ["MIB", "InBackground", "Worker", "WorkerOptions", "WorkerStats", "default_worker_id"]

log = logging.getLogger("reproq.worker")

MIB = 1024 * 1024

_STOP_GRACE_SECONDS = 2.0
"""After a stop, how long stopped tasks get to return before their leases are given back."""

_FINAL_FLUSH_SECONDS = 15.0
"""How long a stopping worker keeps trying to reach the database to record what it has."""

_ABANDONED_HOLD = 10.0
"""An attempt still executing when the worker gives up on it (a thread cannot be killed)
is given back claimable only after this long: time for this process to exit, so the run
never executes twice at once."""

_DB_BACKOFF_MIN = 0.2
_DB_BACKOFF_MAX = 5.0
_MAX_WAIT = 1.0  # the control loop never sleeps longer, whatever the timers say
_RETRY_SOON = 0.05  # keyed rows another claimer held this round


def default_worker_id() -> str:
    """``$WORKER_ID``, else ``<hostname>-<pid>``."""
    return os.environ.get("WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerOptions:
    """Everything that shapes one worker; all durations are in seconds.

    ``allowed_task_modules`` has no permissive default: a worker refuses to start until
    it is told which task paths it may import (``("myapp.tasks.",)``, or ``("*",)`` for
    any). Each entry is a module prefix; ``myapp.tasks`` and ``myapp.tasks.`` both allow
    ``myapp.tasks.send`` but not ``myapp.tasksevil.run``.

    ``reclaim_interval_seconds=math.inf`` switches this worker's reclaiming of expired
    leases off (another worker or process must then do it). ``executor_options`` are the
    keyword arguments of the executor class (see :func:`reproq.executors.make_executor`).
    Several workers in one process need distinct ``worker_id`` values.
    """

    queues: tuple[str, ...] = ("default",)
    concurrency: int = 10
    worker_id: str = field(default_factory=default_worker_id)
    executor: str = "thread"
    executor_options: Mapping[str, Any] = field(default_factory=dict)
    allowed_task_modules: tuple[str, ...] = ()
    lease_seconds: float = 300.0
    heartbeat_seconds: float = 60.0
    reclaim_interval_seconds: float = 60.0
    priority_aging_factor: float = 60.0  # seconds of waiting worth one priority point; 0 = off
    shutdown_timeout: float = 30.0
    logs_dir: str | None = None
    max_payload_bytes: int = MIB
    max_output_bytes: int = MIB
    poll_interval: float = 0.5  # fallback poll when idle; doubles up to max_poll_interval
    max_poll_interval: float = 5.0
    claim_batch: int = 200  # most rows one claim statement takes
    connections: int = 1  # lanes, each with its own connection (reproq.engine.worker_group)
    max_timeout_seconds: float | None = None  # caps each task's timeout_seconds (pool setting)
    statement_timeout: float = 60.0

    def __post_init__(self) -> None:
        # Accept lists (config files, callers) but store immutable values.
        object.__setattr__(self, "queues", tuple(self.queues))
        object.__setattr__(self, "allowed_task_modules", tuple(self.allowed_task_modules))
        object.__setattr__(self, "executor_options", MappingProxyType(dict(self.executor_options)))

    def validate(self) -> None:
        """Raise :class:`~reproq.errors.ConfigError` naming the first bad setting."""
        problems: list[tuple[str, str]] = []
        if not self.queues or not all(isinstance(q_, str) and q_ for q_ in self.queues):
            problems.append(("queues", "name at least one queue"))
        if self.concurrency < 1:
            problems.append(("concurrency", f"must be at least 1, got {self.concurrency}"))
        if not self.worker_id:
            problems.append(("worker_id", "must not be empty"))
        if not any(m.strip() for m in self.allowed_task_modules):
            problems.append(
                (
                    "allowed_task_modules",
                    "is required: list the task module prefixes this worker may import "
                    "(e.g. myapp.tasks.), or '*' to allow any",
                )
            )
        if self.lease_seconds <= 0:
            problems.append(("lease_seconds", "must be positive"))
        if not 0 < self.heartbeat_seconds < self.lease_seconds:
            problems.append(
                (
                    "heartbeat_seconds",
                    f"must be positive and shorter than lease_seconds ({self.lease_seconds:g})",
                )
            )
        for key in ("reclaim_interval_seconds", "poll_interval", "max_poll_interval"):
            if getattr(self, key) <= 0:
                problems.append((key, "must be positive"))
        for key in ("priority_aging_factor", "shutdown_timeout"):
            if getattr(self, key) < 0:
                problems.append((key, "must not be negative"))
        for key in ("max_payload_bytes", "max_output_bytes", "claim_batch"):
            if getattr(self, key) < 1:
                problems.append((key, "must be at least 1"))
        if not 1 <= self.connections <= max(self.concurrency, 1):
            problems.append(
                (
                    "connections",
                    f"must be between 1 and concurrency ({self.concurrency}): every "
                    f"connection's lane needs a slot, got {self.connections}",
                )
            )
        if problems:
            key, message = problems[0]
            raise ConfigError(message, key=key)


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerStats:
    """Counters since the worker started (a snapshot)."""

    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    lease_lost: int = 0  # results discarded because the lease was gone
    given_back: int = 0
    timed_out: int = 0
    reclaimed: int = 0  # expired leases of other (dead) workers handled by this one
    running: int = 0
    held: int = 0  # leases held now (running or waiting to be recorded)


class _Stop(enum.Enum):
    """Why the worker asked a running attempt to stop."""

    CANCEL = "cancel"  # an operator requested it
    LEASE_LOST = "lease_lost"  # the lease is gone: the result would be discarded anyway
    SHUTDOWN = "shutdown"  # the worker is stopping: give the lease back
    TIMEOUT = "timeout"  # past the deadline: already recorded as failed


class _Outcome(enum.Enum):
    """What a slot hands back besides a completion."""

    DISCARD = "discard"
    GIVE_BACK = "give_back"


class _CancelFlag:
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


class _Attempt:
    """A claimed row from claim to record; the control thread owns it once dispatched."""

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
        self.cancel = _CancelFlag()
        self.stop: _Stop | None = None
        self.deadline = math.inf  # set by the slot once the call is built
        self.timeout_seconds: float = float(row.timeout_seconds or 0)
        self.finished = False
        self.abandoned = False
        self.ran_for: float | None = None  # seconds in the executor (for metrics)


_Result = Completion | _Outcome


class InBackground(abc.ABC):
    """:meth:`start` and :meth:`join` for a service whose ``run()`` blocks until it is done.

    ``run()`` then works in a daemon thread named ``_thread_name``, and whatever it raised
    is kept in ``error`` (and handed to :meth:`_on_error`).
    """

    error: BaseException | None = None
    _thread: threading.Thread | None = None
    _thread_name = "reproq-service"

    @abc.abstractmethod
    def run(self) -> None:
        """Work in the calling thread until done."""

    def start(self) -> None:
        """Run in a background thread; see :meth:`join` and :attr:`error`."""
        thread = threading.Thread(target=self._run_captured, name=self._thread_name, daemon=True)
        self._thread = thread
        thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for what :meth:`start` began; True once it has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run_captured(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # surfaced through .error for start()/join() users
            self.error = exc
            self._on_error(exc)

    def _on_error(self, exc: BaseException) -> None:
        """Called in the background thread with what ``run()`` raised."""
        log.debug("%s ended on an error: %s", self._thread_name, exc)


class Worker(InBackground):
    """Executes task runs from the database at ``dsn`` as configured by ``options``.

    Run it in the calling thread with :meth:`run`, or in a background thread with
    :meth:`start` and :meth:`join`. Stop it with :meth:`request_stop` (or by setting the
    event passed to :meth:`run`). A worker runs once.
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
        if options.connections > 1:
            raise ConfigError(
                "a Worker is one lane on one connection: run several with "
                "reproq.engine.worker_group.make_worker",
                key="connections",
            )
        self.dsn = dsn
        self.options = options
        self.worker_id = options.worker_id
        self.clock: Clock = clock or SystemClock()
        self._metrics = metrics
        self.executor: Executor = executor or make_executor(
            options.executor, options.executor_options
        )
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
        self._grace = float(getattr(self.executor, "deadline_grace_seconds", 15.0))
        self._app_name = f"reproq-worker {options.worker_id}"[:63]

        self.ready = threading.Event()
        """Set once the worker is registered, listening and taking tasks."""
        self.error: BaseException | None = None
        """Why :meth:`run` ended with an error, if it did (for :meth:`start` users)."""

        self._conn: Conn | None = None
        self._listener: Listener | None = None
        self._thread_name = f"reproq-worker-{self.worker_id}"
        self._started = False
        self._finished = threading.Event()
        self._wake = threading.Event()
        self._hint = True
        self._stop_level = 0  # 0 running, 1 draining, 2 forced
        self._slot_lock = threading.Lock()
        self._work: queue.SimpleQueue[_Attempt | None] = queue.SimpleQueue()
        self._done: collections.deque[tuple[_Attempt, _Result]] = collections.deque()
        self._slots: list[threading.Thread] = []
        self._slot_seq = 0

        self._leases: dict[int, _Attempt] = {}  # every lease held, running or not yet recorded
        self._busy: set[_Attempt] = set()  # attempts in a slot (not abandoned)
        self._pending: list[Completion] = []
        self._giveback: list[_Attempt] = []
        self._wake_queues: set[str] = set()  # notify these after the next flush

        self._poll_at = 0.0
        self._due_checked_at = 0.0
        self._poll_delay = options.poll_interval
        self._beat_at = 0.0
        self._reclaim_at = 0.0
        self._db_at = 0.0  # no database work before this instant (backoff after trouble)
        self._db_backoff = _DB_BACKOFF_MIN
        self._db_down_since: float | None = None
        self._drain_deadline: float | None = None
        self._kill_deadline: float | None = None
        self._abandoned_any = False

        self._claimed = 0
        self._succeeded = 0
        self._retried = 0
        self._failed = 0
        self._lease_lost = 0
        self._given_back = 0
        self._timed_out = 0
        self._reclaimed = 0

    # -- public control ----------------------------------------------------------------

    def request_stop(self, force: bool = False) -> None:
        """Stop claiming and drain; a second call, or ``force``, gives leases back at once.

        Safe to call from any thread or a signal handler's thread.
        """
        self._stop_level = 2 if force or self._stop_level >= 1 else 1
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop_level > 0

    def stats(self) -> WorkerStats:
        """A snapshot of the worker's counters."""
        return WorkerStats(
            claimed=self._claimed,
            succeeded=self._succeeded,
            retried=self._retried,
            failed=self._failed,
            lease_lost=self._lease_lost,
            given_back=self._given_back,
            timed_out=self._timed_out,
            reclaimed=self._reclaimed,
            running=len(self._busy),
            held=len(self._leases),
        )

    def run(self, stop: threading.Event | None = None) -> None:
        """Execute tasks until a stop is requested (or ``stop`` is set), then drain and return.

        Raises :class:`~reproq.errors.DatabaseError` / :class:`~reproq.errors.SchemaError`
        if the database is unreachable or not migrated at start.
        """
        if self._started:
            raise ReproqError("a Worker runs only once; create a new one")
        self._started = True
        watcher = None
        if stop is not None:
            watcher = threading.Thread(
                target=self._watch, args=(stop,), name="reproq-worker-stop", daemon=True
            )
            watcher.start()
        try:
            self._startup()
            self.ready.set()
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
        conn = self._connect()
        try:
            require_current_schema(conn)
            register(conn, self.record)
        except psycopg.Error as exc:
            conn.close()
            raise DatabaseError(first_line(str(exc))) from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self.executor.start()
        for _ in range(self.options.concurrency):
            self._spawn_slot()
        self._listener = Listener(
            self.dsn,
            self.options.queues,
            self._on_notify,
            application_name=f"reproq-listen {self.worker_id}"[:63],
        )
        self._listener.start()
        opts = self.options
        log.info(
            "worker %s started on %s: queues=%s concurrency=%d executor=%s lease=%gs heartbeat=%gs "
            "reclaim=%gs aging=%g shutdown_timeout=%gs allowed=%s",
            self.worker_id,
            redact_dsn(self.dsn),
            ",".join(opts.queues),
            opts.concurrency,
            self.executor.name,
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
        for _ in self._slots:
            self._work.put(None)
        try:
            self.executor.shutdown(wait=not self._abandoned_any)
        except Exception as exc:  # shutdown trouble must not hide how the run ended
            log.warning("executor shutdown failed: %s", exc)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        log.info(
            "worker %s stopped: %d claimed, %d succeeded, %d retried, %d failed, "
            "%d given back, %d lease lost",
            self.worker_id,
            self._claimed,
            self._succeeded,
            self._retried,
            self._failed,
            self._given_back,
            self._lease_lost,
        )

    def _on_notify(self) -> None:
        self._hint = True
        self._wake.set()

    # -- the control loop --------------------------------------------------------------

    def _loop(self) -> None:
        opts = self.options
        while True:
            self._wake.clear()
            now = time.monotonic()
            self._collect()
            if self._stop_level and self._shutdown_step(now):
                return
            self._watchdog(now)
            free = 0 if self._stop_level else opts.concurrency - len(self._busy)
            want_claim = free > 0 and (self._hint or now >= self._poll_at)
            again = False
            if now >= self._db_at and (
                self._pending or self._giveback or want_claim or self._wake_queues
            ):
                again = self._sync(min(free, opts.claim_batch) if want_claim else 0)
            if now >= self._beat_at and now >= self._db_at:
                self._heartbeat(now)
            if now >= self._reclaim_at and now >= self._db_at and not self._stop_level:
                self._reclaim(now)
            if again or self._done:
                continue
            if self._stop_level and not (self._busy or self._pending or self._giveback):
                continue  # nothing left: the next round ends the loop
            self._wake.wait(self._sleep_for(now, free))

    def _sleep_for(self, now: float, free: int) -> float:
        wake_at = min(self._beat_at, now + _MAX_WAIT)
        if not self._stop_level:
            wake_at = min(wake_at, self._reclaim_at)
            if free > 0:
                wake_at = min(wake_at, self._poll_at)
        for attempt in self._busy:
            wake_at = min(wake_at, attempt.deadline + self._grace)
        for deadline in (self._drain_deadline, self._kill_deadline):
            if deadline is not None:
                wake_at = min(wake_at, deadline)
        if self._pending or self._giveback:
            wake_at = min(wake_at, self._db_at)
        return max(wake_at - now, 0.0)

    def _collect(self) -> None:
        """Take what the slots handed back."""
        done = self._done
        while done:
            attempt, result = done.popleft()
            self._busy.discard(attempt)
            if result is _Outcome.DISCARD:
                self._leases.pop(attempt.lease.result_id, None)
                self._lease_lost += 1
            elif result is _Outcome.GIVE_BACK:
                self._giveback.append(attempt)
            else:
                self._pending.append(result)
                if attempt.row.keyed:
                    self._wake_queues.add(attempt.row.queue_name)

    def _sync(self, n: int) -> bool:
        """Record what ended, give back what must be, and claim up to ``n`` rows.

        The common case is one statement, and so one round trip and one commit: the lean
        claim records the completions too. Otherwise the statements and the COMMIT go out
        together in pipeline mode, still one round trip. Returns True when another round
        should follow at once (a full batch came back).
        """
        pending, self._pending = self._pending, []
        giveback, self._giveback = self._giveback, []
        wake_queues, self._wake_queues = self._wake_queues, set()
        if self._stop_level:
            n = 0  # a stop requested since this round began: claim nothing more
        if n:
            # Consumed before the claim: a NOTIFY arriving during it sets the hint again.
            self._hint = False
        applied: set[int] = set()
        returned: set[int] = set()
        first: ClaimResult | None = None
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
                    applied = completion.applied_ids(finish_cur)
                if claim_cur is not None:
                    first = claimer.read(claim_cur)
        except psycopg.Error as exc:
            self._pending = pending + self._pending
            self._giveback = giveback + self._giveback
            self._wake_queues |= wake_queues
            if pending and not _is_transient(exc, self._conn):
                self._pending = self._flush_each(self._pending)
            self._db_trouble(exc)
            return False
        self._db_ok()
        self._recorded(pending, applied)
        for attempt in giveback:
            self._leases.pop(attempt.lease.result_id, None)
        self._given_back += len(returned)
        if first is None or not n:
            return False
        result = first
        if first.incomplete and len(first.rows) < n:
            try:
                result = self._claimer.complete(conn, first, n)
            except psycopg.Error as exc:
                self._db_trouble(exc)
                result = first
        self._dispatch(result.rows)
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

    def _recorded(self, pending: Sequence[Completion], applied: set[int]) -> None:
        lost = 0
        for c in pending:
            attempt = self._leases.pop(c.result_id, None)
            if self._metrics is not None and attempt is not None and c.result_id in applied:
                self._metrics.task_finished(
                    attempt.row.queue_name, _processed_status(c, attempt), attempt.ran_for
                )
            if c.result_id not in applied:
                lost += 1
            elif c.status == TaskStatus.SUCCESSFUL:
                self._succeeded += 1
            elif c.status == TaskStatus.READY:
                self._retried += 1
            else:
                self._failed += 1
        if lost:
            self._lease_lost += lost
            log.warning(
                "%d result(s) discarded: their lease was no longer held by %s",
                lost,
                self.worker_id,
            )

    def _flush_each(self, pending: list[Completion]) -> list[Completion]:
        """A batch the database refused as a whole: record row by row, replacing any row
        that cannot be stored by a failure saying why. Returns what is left to retry."""
        left: list[Completion] = []
        for c in pending:
            try:
                conn = self._db()
                applied = flush(conn, self.worker_id, [c])
            except psycopg.Error as exc:
                if _is_transient(exc, self._conn):
                    left.append(c)
                    continue
                log.error("task %s: outcome could not be stored: %s", c.result_id, exc)
                fallback = failure_completion(
                    self._leases[c.result_id].lease
                    if c.result_id in self._leases
                    else Lease(result_id=c.result_id, attempt=c.attempt, max_attempts=c.attempt),
                    ErrorKind.INFRA_ERROR,
                    f"the outcome could not be stored: {first_line(str(exc))}",
                    self.policy,
                    at=self.clock.now().isoformat(),
                )
                try:
                    applied = flush(self._db(), self.worker_id, [replace(fallback, logs_uri=None)])
                except psycopg.Error as exc2:
                    log.error("task %s: dropping its outcome (%s)", c.result_id, exc2)
                    self._leases.pop(c.result_id, None)
                    continue
                self._recorded([fallback], applied)
                continue
            self._recorded([c], applied)
        return left

    def _dispatch(self, rows: Sequence[ClaimedRow]) -> None:
        self._claimed += len(rows)
        if self._metrics is not None:
            for queue_name, count in collections.Counter(r.queue_name for r in rows).items():
                self._metrics.task_claimed(queue_name, count)
        for row in rows:
            attempt = _Attempt(row)
            self._leases[row.result_id] = attempt
            self._busy.add(attempt)
            self._work.put(attempt)

    # -- heartbeat, reclaim, watchdog --------------------------------------------------

    def _heartbeat(self, now: float) -> None:
        attempts = list(self._leases.values())
        try:
            renewal = renew(
                self._db(), self.record, [a.lease for a in attempts], self.options.lease_seconds
            )
        except psycopg.Error as exc:
            # The tasks keep running: leases are long enough to survive a missed beat.
            self._db_trouble(exc)
            self._beat_at = now + min(self.options.heartbeat_seconds, self._db_backoff)
            return
        self._db_ok()
        self._beat_at = now + self.options.heartbeat_seconds
        for attempt in attempts:
            rid = attempt.lease.result_id
            if rid not in renewal.renewed:
                if attempt in self._busy and attempt.stop is None:
                    log.warning(
                        "task %s attempt %d: lease lost; stopping it and discarding its result",
                        rid,
                        attempt.lease.attempt,
                    )
                    attempt.stop = _Stop.LEASE_LOST
                    attempt.cancel.set()
            elif rid in renewal.cancel_requested and attempt.stop is None:
                log.info("task %s: cancel requested; stopping it", rid)
                attempt.stop = _Stop.CANCEL
                attempt.cancel.set()

    def _reclaim(self, now: float) -> None:
        try:
            result = reclaim_expired(self._db(), worker_id=self.worker_id, held=self._leases.keys())
        except psycopg.Error as exc:
            self._db_trouble(exc)
            self._reclaim_at = now + min(self.options.reclaim_interval_seconds, self._db_backoff)
            return
        self._db_ok()
        self._reclaimed += result.count
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
        """Fail attempts past their deadline and give their slot a fresh thread."""
        late = [a for a in self._busy if now >= a.deadline + self._grace]
        for attempt in late:
            with self._slot_lock:
                if attempt.finished:
                    continue
                attempt.abandoned = True
            attempt.stop = _Stop.TIMEOUT
            attempt.cancel.set()
            self._busy.discard(attempt)
            self._timed_out += 1
            self._abandoned_any = True
            timeout = attempt.timeout_seconds
            log.warning(
                "task %s attempt %d: timeout after %ss; its thread is abandoned",
                attempt.lease.result_id,
                attempt.lease.attempt,
                timeout,
            )
            self._pending.append(
                failure_completion(
                    attempt.lease,
                    ErrorKind.INFRA_ERROR,
                    f"timeout after {timeout}s (timeout_seconds)",
                    self.policy,
                    at=self.clock.now().isoformat(),
                )
            )
            self._spawn_slot()

    # -- shutdown ----------------------------------------------------------------------

    def _shutdown_step(self, now: float) -> bool:
        """Advance the drain; True once the loop may end."""
        if self._drain_deadline is None:
            timeout = 0.0 if self._stop_level >= 2 else self.options.shutdown_timeout
            self._drain_deadline = now + timeout
            log.info(
                "worker %s stopping: %d task(s) running, waiting up to %gs",
                self.worker_id,
                len(self._busy),
                timeout,
            )
        forced = self._stop_level >= 2
        if self._busy and self._kill_deadline is None and (forced or now >= self._drain_deadline):
            for attempt in self._busy:
                if attempt.stop is None:
                    attempt.stop = _Stop.SHUTDOWN
                attempt.cancel.set()
            self._kill_deadline = now + (0.0 if forced else _STOP_GRACE_SECONDS)
        if (
            self._busy
            and self._kill_deadline is not None
            and (forced or now >= self._kill_deadline)
        ):
            self._abandon_running()
        if self._busy:
            return False
        if not (self._pending or self._giveback or self._wake_queues):
            return True
        # Keep trying to record what we have, but not forever.
        if self._db_down_since is not None and now - self._db_down_since > _FINAL_FLUSH_SECONDS:
            log.error(
                "worker %s: database unreachable; %d outcome(s) not recorded (their leases "
                "will expire and the runs be reclaimed)",
                self.worker_id,
                len(self._pending) + len(self._giveback),
            )
            return True
        return False

    def _abandon_running(self) -> None:
        """Give back the leases of attempts that did not stop in time."""
        for attempt in list(self._busy):
            with self._slot_lock:
                if attempt.finished:
                    continue
                attempt.abandoned = True
            self._busy.discard(attempt)
            self._abandoned_any = True
            self._giveback.append(attempt)
            log.warning(
                "task %s attempt %d did not stop; giving its lease back, claimable in %gs",
                attempt.lease.result_id,
                attempt.lease.attempt,
                _ABANDONED_HOLD,
            )

    # -- slots -------------------------------------------------------------------------

    def _spawn_slot(self) -> None:
        self._slot_seq += 1
        thread = threading.Thread(
            target=self._slot, name=f"reproq-slot-{self._slot_seq}", daemon=True
        )
        self._slots.append(thread)
        thread.start()

    def _slot(self) -> None:
        work = self._work
        done = self._done
        wake = self._wake
        lock = self._slot_lock
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

    def _execute(self, attempt: _Attempt) -> _Result:
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
                if stop is _Stop.LEASE_LOST or stop is _Stop.TIMEOUT:
                    return _Outcome.DISCARD
                if stop is _Stop.SHUTDOWN:
                    return _Outcome.GIVE_BACK
                return cancelled_completion(attempt.lease, outcome, policy, at=self._at())
            if stop is _Stop.LEASE_LOST:
                return _Outcome.DISCARD
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

    # -- database ----------------------------------------------------------------------

    def _connect(self) -> Conn:
        from reproq.db import connect

        conn = connect(self.dsn, application_name=self._app_name)
        try:
            conn.execute(
                q("worker_session_setup"),
                {"statement_timeout": f"{int(self.options.statement_timeout * 1000)}ms"},
            )
        except psycopg.Error as exc:
            conn.close()
            raise DatabaseError(first_line(str(exc))) from exc
        return conn

    def _db(self) -> Conn:
        """The control connection, reconnecting if it was lost."""
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
                self._conn = None
            try:
                conn = self._connect()
            except DatabaseError as exc:
                raise psycopg.OperationalError(str(exc)) from exc
            self._conn = conn
            log.info("worker %s reconnected to the database", self.worker_id)
        return conn

    def _db_trouble(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._db_down_since is None:
            self._db_down_since = now
        conn = self._conn
        if conn is not None and (
            conn.broken or conn.closed or isinstance(exc, psycopg.OperationalError)
        ):
            conn.close()
            self._conn = None
        log.warning(
            "database trouble on %s (%s); retrying in %.1fs; running tasks continue",
            redact_dsn(self.dsn),
            first_line(str(exc)) or type(exc).__name__,
            self._db_backoff,
        )
        self._db_at = now + self._db_backoff
        self._db_backoff = min(self._db_backoff * 2, _DB_BACKOFF_MAX)

    def _db_ok(self) -> None:
        self._db_backoff = _DB_BACKOFF_MIN
        self._db_down_since = None


def _processed_status(completion: Completion, attempt: _Attempt) -> str:
    """The ``status`` label of ``reproq_tasks_processed_total`` for a recorded attempt."""
    if completion.status == TaskStatus.SUCCESSFUL:
        return "success"
    if completion.status == TaskStatus.READY:
        return "retry"
    return "cancelled" if attempt.stop is _Stop.CANCEL else "failure"


def _is_transient(exc: BaseException, conn: Conn | None) -> bool:
    """A connection-level problem (retry later) rather than a statement the server refuses."""
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    return conn is None or conn.closed or conn.broken
