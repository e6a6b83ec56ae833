"""Beat: enqueue ``periodic_tasks`` when their cron schedule is due.

Any number of beat processes may run against one database. One of them leads: it holds
a session advisory lock (:data:`BEAT_LOCK_ID`) on a dedicated connection and is the only
one that ticks; the others try to take the lock every tick, so when the leader's
connection ends (process killed, backend terminated, host gone) another beat leads within
a tick or two. Server-side TCP keepalives on that connection bound how long PostgreSQL
takes to notice a vanished host.

Leadership is for efficiency, not for correctness. Each tick claims due rows with
``FOR UPDATE SKIP LOCKED`` and, in the same transaction, inserts their runs and moves
``next_run_at`` past the fire times it enqueued. A second beat (a leader that has not yet
noticed it lost the lock, or ``reproq beat --once``) either skips the locked rows or, once
the first commits, no longer finds them due. So each (schedule, fire time) is enqueued at
most once. Every run's spec carries ``periodic_name`` and ``scheduled_at``, giving each
fire time its own ``spec_hash``.

"Now" always comes from the beat's :class:`~reproq.clock.Clock` and is passed to SQL as a
parameter, so tests drive schedules with a fake clock. Session advisory locks need a
session connection: point beat at PostgreSQL directly, or at a PgBouncer pool in session
mode.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from reproq.clock import Clock, SystemClock
from reproq.db import Conn, connect, first_line, translate_errors
from reproq.engine.link import Link
from reproq.errors import (
    DatabaseError,
    InvalidSpec,
    PayloadTooLarge,
    ReproqError,
)
from reproq.producer.enqueue import NewTask, insert_tasks
from reproq.queries import q
from reproq.schedule.cron import DEFAULT_SKIP_GRACE, CronSchedule, MisfirePlan, MisfirePolicy
from reproq.spec import build_spec

__all__ = [
    "BEAT_LOCK_ID",
    "LEADERSHIP_POLL",
    "Beat",
    "BeatLeader",
    "EnqueuedRun",
    "current_leader",
    "decode_payload",
]

logger = logging.getLogger("reproq.beat")

BEAT_LOCK_ID = 0x7265_7072_6F71_0002
"""Advisory lock key held by the leading beat ("reproq" in ASCII, then 2)."""

_BATCH = 100
"""Due schedules claimed per transaction within one tick."""

LEADERSHIP_POLL = 2.0
"""Seconds between a follower's attempts to take the leadership lock (at most)."""

# libpq keepalives on the leader's side, so a leader cut off from the server notices
# within seconds instead of after the kernel's default of hours.
_KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class EnqueuedRun:
    """One fire time of one schedule turned into a task run."""

    periodic_name: str
    scheduled_at: datetime
    result_id: int


@dataclass(frozen=True, kw_only=True, slots=True)
class BeatLeader:
    """The database session currently holding the beat leadership lock."""

    pid: int
    application_name: str | None
    client_addr: str | None
    backend_start: datetime | None


class Beat:
    """The periodic-task scheduler; a library object with ``reproq beat`` as a thin CLI.

    ``run(stop_event)`` loops until the event is set, leading when it can; ``run_once()``
    performs one tick whether or not this beat leads (safe: rows are claimed with
    ``SKIP LOCKED``). Drive one ``Beat`` from one thread; :attr:`is_leader` may be read
    from any.
    """

    def __init__(
        self,
        dsn: str,
        *,
        tick: float = 1.0,
        clock: Clock | None = None,
        lock_id: int = BEAT_LOCK_ID,
        name: str | None = None,
        skip_grace: timedelta | None = None,
    ) -> None:
        if tick <= 0:
            raise ValueError(f"beat tick must be positive, got {tick}")
        self.dsn = dsn
        self.tick = float(tick)
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.lock_id = lock_id
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        # A fire time seen within two ticks (at least a minute) of its due time is on
        # time, not a misfire: a beat ticking every `tick` seconds sees it that late.
        self.skip_grace = (
            skip_grace
            if skip_grace is not None
            else max(DEFAULT_SKIP_GRACE, timedelta(seconds=2 * self.tick))
        )
        # Two links: a session holding the leadership lock, and one for the ticks' work.
        self._lock = Link(self._open_lock_connection, name=f"beat {self.name} (lock)", log=logger)
        self._work = Link(self._open_work_connection, name=f"beat {self.name}", log=logger)
        self._is_leader = False
        self._db_down = False
        self._bad_schedules: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Beat(name={self.name!r}, tick={self.tick}, leader={self._is_leader})"

    def __enter__(self) -> Beat:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def is_leader(self) -> bool:
        """Whether this beat held the leadership lock at its last check."""
        return self._is_leader

    # -- the loop ---------------------------------------------------------------------

    def run(self, stop_event: threading.Event) -> None:
        """Lead when possible and tick every :attr:`tick` seconds until ``stop_event`` is set.

        A follower tries the lock every :data:`LEADERSHIP_POLL` seconds (or every tick if
        shorter), so a new leader takes over within seconds even with a long tick. On
        return this beat has stepped down and closed its connections. Database problems
        are logged and retried; they never end the loop. Waiting is in real time (the
        clock only supplies "now").
        """
        poll = min(self.tick, LEADERSHIP_POLL)
        next_tick = 0.0
        logger.info("beat %s started (tick %gs)", self.name, self.tick)
        try:
            while not stop_event.is_set():
                was_leader = self._is_leader
                if self.check_leadership():
                    if not was_leader or time.monotonic() >= next_tick:
                        self._tick_safely()
                        next_tick = time.monotonic() + self.tick
                    wait = max(0.0, next_tick - time.monotonic())
                else:
                    wait = poll
                stop_event.wait(wait)
        finally:
            self.close()
            logger.info("beat %s stopped", self.name)

    def _tick_safely(self) -> None:
        try:
            self.run_once()
        except ReproqError as exc:
            logger.warning("beat %s: tick failed: %s", self.name, exc)
        except Exception:
            # A bug must not stop scheduling for every other schedule: log it in full
            # and try again next tick.
            logger.exception("beat %s: tick failed unexpectedly", self.name)

    def check_leadership(self) -> bool:
        """Confirm or try to take leadership; returns :attr:`is_leader`.

        A leader checks that its lock connection is still alive (if it is, the session
        lock is still held); a follower tries the lock. A broken connection means
        stepping down and reconnecting on a later call.
        """
        try:
            conn = self._lock.get()
            if self._is_leader:
                conn.execute(q("beat_ping")).fetchone()
            else:
                row = conn.execute(q("beat_try_lock"), {"lock_id": self.lock_id}).fetchone()
                if row is not None and row["acquired"]:
                    self._is_leader = True
                    logger.info("beat %s is now the leader", self.name)
        except (psycopg.Error, DatabaseError) as exc:
            self._drop_lock_connection(reason=first_line(str(exc)))
        return self._is_leader

    def step_down(self) -> None:
        """Give up leadership now (release the lock) so another beat can lead."""
        if self._lock.conn is not None and self._is_leader:
            try:
                self._lock.conn.execute(q("beat_unlock"), {"lock_id": self.lock_id})
            except psycopg.Error as exc:
                self._drop_lock_connection(reason=first_line(str(exc)))
                return
        self._set_follower(reason="released the lock")

    def close(self) -> None:
        """Step down and close both connections."""
        self._lock.drop()  # ends the session, which frees the lock
        self._set_follower(reason="closed")
        self._work.drop()

    # -- one tick ---------------------------------------------------------------------

    def run_once(self) -> int:
        """Enqueue every due fire time once, whether or not this beat leads.

        Returns how many runs were enqueued. Raises :class:`DatabaseError` when the
        database cannot be reached (the work connection is reopened next time).
        """
        now = self.clock.now()
        enqueued = 0
        after_name = ""
        while True:
            batch, last_name, runs = self._process_batch(now, after_name)
            for run in runs:
                logger.info(
                    "beat %s: enqueued %s scheduled_at=%s result_id=%d",
                    self.name,
                    run.periodic_name,
                    run.scheduled_at.isoformat(),
                    run.result_id,
                )
            enqueued += len(runs)
            if batch < _BATCH:
                return enqueued
            after_name = last_name

    def _process_batch(self, now: datetime, after_name: str) -> tuple[int, str, list[EnqueuedRun]]:
        """Claim one batch of due rows and enqueue them, all in one transaction."""
        conn = self._work.get()
        try:
            with translate_errors(), conn.transaction():
                rows = conn.execute(
                    q("beat_due_schedules"),
                    {"now": now, "after_name": after_name, "batch": _BATCH},
                ).fetchall()
                tasks: list[NewTask] = []
                owners: list[tuple[str, datetime]] = []
                names: list[str] = []
                next_runs: list[datetime] = []
                last_runs: list[datetime | None] = []
                for row in rows:
                    planned = self._plan_row(row, now)
                    if planned is None:
                        continue
                    plan, row_tasks = planned
                    tasks.extend(row_tasks)
                    owners.extend((row["name"], t) for t in plan.fire_times)
                    names.append(row["name"])
                    next_runs.append(plan.next_run_at)
                    # As reproq-django's Go worker records it: the fire time enqueued.
                    last_runs.append(max(plan.fire_times) if plan.fire_times else None)
                ids = insert_tasks(conn, tasks) if tasks else []
                if names:
                    conn.execute(
                        q("beat_advance_schedules"),
                        {"names": names, "next_run_at": next_runs, "last_run_at": last_runs},
                    )
        except DatabaseError as exc:
            self._work.trouble(exc)  # a connection that is gone is opened anew next tick
            raise
        self._work.ok()
        runs = [
            EnqueuedRun(periodic_name=name, scheduled_at=at, result_id=rid)
            for (name, at), rid in zip(owners, ids, strict=True)
        ]
        last_name = rows[-1]["name"] if rows else after_name
        return len(rows), last_name, runs

    def _plan_row(
        self, row: Mapping[str, Any], now: datetime
    ) -> tuple[MisfirePlan, list[NewTask]] | None:
        """The misfire plan and task rows for one due schedule; None leaves it untouched."""
        name: str = row["name"]
        try:
            schedule = CronSchedule.parse(row["cron_expr"])
        except ValueError as exc:
            # Left due, so it runs as soon as someone fixes the expression; logged once.
            if self._bad_schedules.get(name) != row["cron_expr"]:
                self._bad_schedules[name] = row["cron_expr"]
                logger.error("beat %s: schedule %s is not enqueued: %s", self.name, name, exc)
            return None
        self._bad_schedules.pop(name, None)
        policy = _policy(row["misfire_policy"], name)
        plan = schedule.misfire_fire_times(
            policy,
            row["next_run_at"],
            now,
            max(1, int(row["misfire_limit"])),
            grace=self.skip_grace,
        )
        if plan.missed:
            logger.warning(
                "beat %s: schedule %s missed %d fire time(s) before %s (misfire=%s)",
                self.name,
                name,
                plan.missed,
                now.isoformat(),
                policy,
            )
        try:
            tasks = [periodic_task(row, at) for at in plan.fire_times]
        except (InvalidSpec, PayloadTooLarge) as exc:
            # The row itself is broken: move on rather than fail the same way every tick.
            logger.error(
                "beat %s: schedule %s skipped %d run(s): %s",
                self.name,
                name,
                len(plan.fire_times),
                exc,
            )
            return MisfirePlan(fire_times=(), next_run_at=plan.next_run_at, missed=0), []
        return plan, tasks

    # -- connections ------------------------------------------------------------------

    def _open_lock_connection(self) -> Conn:
        dsn = make_conninfo(self.dsn, **_KEEPALIVES)
        try:
            conn = connect(dsn, application_name=_app_name("reproq-beat-lock", self.name))
        except DatabaseError:
            if not self._db_down:
                logger.warning("beat %s: database unreachable; retrying each tick", self.name)
                self._db_down = True
            raise
        try:
            conn.execute(q("beat_keepalive"))
        except psycopg.Error:
            conn.close()
            raise
        if self._db_down:
            logger.info("beat %s: database reachable again", self.name)
            self._db_down = False
        return conn

    def _drop_lock_connection(self, *, reason: str) -> None:
        self._lock.drop()
        self._set_follower(reason=f"lost its database connection ({reason})")

    def _set_follower(self, *, reason: str) -> None:
        if self._is_leader:
            self._is_leader = False
            logger.info("beat %s stepped down: %s", self.name, reason)

    def _open_work_connection(self) -> Conn:
        return connect(self.dsn, application_name=_app_name("reproq-beat", self.name))


def current_leader(conn: Conn, *, lock_id: int = BEAT_LOCK_ID) -> BeatLeader | None:
    """The session holding the beat leadership lock in this database, or None."""
    with translate_errors():
        row = conn.execute(q("beat_leader"), {"lock_id": lock_id}).fetchone()
    if row is None:
        return None
    return BeatLeader(
        pid=int(row["pid"]),
        application_name=row["application_name"],
        client_addr=row["client_addr"],
        backend_start=row["backend_start"],
    )


def decode_payload(payload: Any) -> tuple[list[Any], dict[str, Any]]:
    """``(args, kwargs)`` from ``periodic_tasks.payload_json``.

    An object with an ``args`` or a ``kwargs`` key is that pair (other keys are ignored, as
    reproq-django's Go worker ignores them); a bare array is the args; any other object is
    the kwargs. Raises :class:`InvalidSpec` otherwise.
    """
    if payload is None:
        return [], {}
    if isinstance(payload, list):
        return list(payload), {}
    if not isinstance(payload, dict):
        raise InvalidSpec(f"payload_json must be an object or an array, got {payload!r}")
    if "args" in payload or "kwargs" in payload:
        args = payload.get("args") or []
        kwargs = payload.get("kwargs") or {}
        if not isinstance(args, list):
            raise InvalidSpec(f"payload_json.args must be an array, got {args!r}")
        if not isinstance(kwargs, dict):
            raise InvalidSpec(f"payload_json.kwargs must be an object, got {kwargs!r}")
        return list(args), dict(kwargs)
    return [], dict(payload)


def periodic_task(
    row: Mapping[str, Any], scheduled_at: datetime, *, metadata: Mapping[str, Any] | None = None
) -> NewTask:
    """The task run for one fire time of a ``periodic_tasks`` row."""
    args, kwargs = decode_payload(row["payload_json"])
    spec = build_spec(
        row["task_path"],
        args,
        kwargs,
        queue_name=row["queue_name"],
        priority=int(row["priority"]),
        concurrency_key=row["concurrency_key"],
        concurrency_limit=int(row["concurrency_limit"] or 0),
        max_attempts=int(row["max_attempts"]),
        extra={"periodic_name": row["name"], "scheduled_at": scheduled_at.isoformat()},
    )
    return NewTask.from_spec(spec, metadata=metadata)


def _policy(value: Any, name: str) -> MisfirePolicy:
    try:
        return MisfirePolicy(value)
    except ValueError:
        logger.warning(
            "schedule %s has unknown misfire_policy %r; using %s", name, value, MisfirePolicy.LATEST
        )
        return MisfirePolicy.LATEST


def _app_name(prefix: str, name: str) -> str:
    # PostgreSQL truncates application_name at 63 bytes.
    return f"{prefix} {name}"[:63]
