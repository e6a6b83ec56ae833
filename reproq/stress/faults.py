"""Faults for torture runs: a seeded plan, and the code that inflicts each fault.

:func:`plan_faults` turns a seed into a list of :class:`FaultEvent` (when, what, which
worker, how long) — pure, so a failing run can be replayed with the same ``--seed``.
:class:`FaultInjector` applies events to a live :class:`~reproq.stress.fleet.Fleet` and
database.

Kinds:

* ``kill`` — SIGKILL a worker; it is restarted (same worker id) a moment later. Its
  leases expire and are reclaimed.
* ``stop`` — SIGSTOP a worker for longer than its lease, then SIGCONT. Its tasks are
  reclaimed and run elsewhere meanwhile; when it wakes, fencing must discard whatever its
  old attempts produce. In the ``twin`` variant a replacement with the *same worker id*
  starts while it sleeps, so fencing must rely on the attempt number, not the id.
* ``term`` — graceful SIGTERM (shutdown, leases given back), then a restart.
* ``db-kill`` — ``pg_terminate_backend`` of every worker and beat connection.
* ``db-restart`` — restart PostgreSQL (clean ``fast`` restart, or ``crash``: SIGKILL the
  server and let it recover). Needs a server the harness started itself.
* ``slow`` — hold ``LOCK TABLE task_runs IN SHARE ROW EXCLUSIVE MODE`` (``table``) or
  ``FOR UPDATE`` on RUNNING rows (``rows``) for seconds, stalling claims, heartbeats and
  completions.
* ``db-freeze`` — SIGSTOP the server process of a worker's control connection, then
  SIGCONT it: what a network partition looks like to that worker (its connection stays
  open, nothing answers). A short freeze only delays the worker; a ``long`` one outlasts
  its answer timeout, so it must drop the connection and carry on on a new one. Needs
  the harness's own server (its processes are signalled).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from reproq.db import connect, translate_errors
from reproq.errors import ReproqError, UsageError
from reproq.pg.cluster import LocalPostgres
from reproq.queries import q

__all__ = [
    "DEFAULT_FAULTS",
    "FaultEvent",
    "FaultInjector",
    "FaultKind",
    "FaultRecord",
    "WorkerControl",
    "parse_fault_kinds",
    "plan_faults",
]

logger = logging.getLogger("reproq.stress.faults")


class FaultKind(StrEnum):
    """The faults a torture run can inject (the ``--faults`` names)."""

    KILL = "kill"
    STOP = "stop"
    TERM = "term"
    DB_KILL = "db-kill"
    DB_RESTART = "db-restart"
    SLOW = "slow"
    DB_FREEZE = "db-freeze"

    @property
    def needs_local_server(self) -> bool:
        """Whether the fault needs a PostgreSQL the harness controls (restarts, signals)."""
        return self in (FaultKind.DB_RESTART, FaultKind.DB_FREEZE)


DEFAULT_FAULTS: tuple[FaultKind, ...] = tuple(FaultKind)
"""Every kind; ``db-restart`` and ``db-freeze`` are dropped when the server is not the
harness's own."""

LONG_FREEZE_SECONDS = (24.0, 28.0)
"""How long a ``long`` db-freeze lasts: past a worker's answer timeout (its 15 s
statement_timeout plus 5 s), so it has to give the frozen connection up."""

_WEIGHTS: dict[FaultKind, float] = {
    FaultKind.KILL: 3.0,
    FaultKind.STOP: 2.0,
    FaultKind.TERM: 2.0,
    FaultKind.DB_KILL: 2.0,
    FaultKind.DB_RESTART: 1.0,
    FaultKind.SLOW: 2.0,
    FaultKind.DB_FREEZE: 1.5,
}

_MIN_RESTART_GAP = 20.0
"""Seconds between two database restarts: each costs every connection and a recovery."""


def parse_fault_kinds(text: str) -> tuple[FaultKind, ...]:
    """``"kill,stop,db-kill"`` → kinds; ``""``/``"none"`` → none; ``"all"`` → every kind."""
    text = text.strip()
    if text in ("", "none"):
        return ()
    if text == "all":
        return DEFAULT_FAULTS
    kinds: list[FaultKind] = []
    for part in text.split(","):
        name = part.strip()
        try:
            kind = FaultKind(name)
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise UsageError(f"unknown fault {name!r} (known: {known}, all, none)") from None
        if kind not in kinds:
            kinds.append(kind)
    return tuple(kinds)


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultEvent:
    """One planned fault."""

    at: float
    """Seconds after the start of the run."""
    kind: FaultKind
    target: int = 0
    """Worker slot (for process faults)."""
    seconds: float = 0.0
    """How long the fault lasts (stop, slow) or how long until the restart (kill, term)."""
    variant: str = ""
    """``twin`` (stop), ``crash``/``fast`` (db-restart), ``table``/``rows`` (slow),
    ``long`` (db-freeze)."""

    @property
    def targets_process(self) -> bool:
        """Whether :attr:`target` names a worker (or beat) slot."""
        return self.kind in (FaultKind.KILL, FaultKind.STOP, FaultKind.TERM, FaultKind.DB_FREEZE)

    def describe(self) -> str:
        """A short human description."""
        what = f"{self.kind}"
        if self.variant:
            what += f"/{self.variant}"
        if self.targets_process:
            what += f" {'beat' if self.variant == 'beat' else 'worker'}#{self.target}"
        if self.seconds:
            what += f" {self.seconds:.1f}s"
        return what


def plan_faults(
    *,
    seed: int,
    duration: float,
    kinds: Sequence[FaultKind],
    workers: int,
    lease_seconds: float,
    mean_interval: float,
    beats: int = 0,
    warmup: float = 3.0,
) -> list[FaultEvent]:
    """A seeded schedule of faults over ``duration`` seconds.

    Gaps between faults are uniform in ``[0.5, 1.5] x mean_interval``. Nothing happens
    during the first ``warmup`` seconds, and the last fault leaves enough time for its
    effects (a lease to expire, a server to restart) to play out before the run ends.
    """
    if not kinds or workers < 1 or duration <= 0:
        return []
    rng = random.Random(seed)
    pool = list(kinds)
    weights = [_WEIGHTS[k] for k in pool]
    recovery = lease_seconds + 3.0
    last_restart = -_MIN_RESTART_GAP
    events: list[FaultEvent] = []
    at = warmup + rng.uniform(0.0, mean_interval)
    while at < duration - recovery:
        kind = rng.choices(pool, weights)[0]
        if kind is FaultKind.DB_RESTART and at - last_restart < _MIN_RESTART_GAP:
            others = [k for k in pool if k is not FaultKind.DB_RESTART]
            if not others:
                at += rng.uniform(0.5, 1.5) * mean_interval
                continue
            kind = rng.choice(others)
        event = _event(rng, at, kind, workers=workers, beats=beats, lease=lease_seconds)
        if kind is FaultKind.DB_RESTART:
            last_restart = at
        events.append(event)
        at += rng.uniform(0.5, 1.5) * mean_interval
    return events


def _event(
    rng: random.Random, at: float, kind: FaultKind, *, workers: int, beats: int, lease: float
) -> FaultEvent:
    target = rng.randrange(workers)
    if kind is FaultKind.KILL:
        if beats and rng.random() < 0.2:
            return FaultEvent(
                at=at, kind=kind, target=rng.randrange(beats), seconds=1.0, variant="beat"
            )
        return FaultEvent(at=at, kind=kind, target=target, seconds=rng.uniform(0.2, 2.0))
    if kind is FaultKind.STOP:
        return FaultEvent(
            at=at,
            kind=kind,
            target=target,
            seconds=lease + rng.uniform(1.0, 3.0),
            variant="twin" if rng.random() < 0.3 else "",
        )
    if kind is FaultKind.TERM:
        return FaultEvent(at=at, kind=kind, target=target, seconds=rng.uniform(0.2, 1.0))
    if kind is FaultKind.DB_RESTART:
        return FaultEvent(at=at, kind=kind, variant="crash" if rng.random() < 0.5 else "fast")
    if kind is FaultKind.SLOW:
        return FaultEvent(
            at=at,
            kind=kind,
            seconds=rng.uniform(1.0, 4.0),
            variant="table" if rng.random() < 0.5 else "rows",
        )
    if kind is FaultKind.DB_FREEZE:
        if rng.random() < 0.5:
            return FaultEvent(
                at=at,
                kind=kind,
                target=target,
                seconds=rng.uniform(*LONG_FREEZE_SECONDS),
                variant="long",
            )
        return FaultEvent(at=at, kind=kind, target=target, seconds=rng.uniform(1.0, 6.0))
    return FaultEvent(at=at, kind=kind)


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultRecord:
    """A fault as it was actually applied."""

    at: float
    """Seconds after the start of the run when it was applied."""
    event: FaultEvent
    ok: bool
    note: str = ""
    began: dt.datetime | None = None
    """Wall-clock time the fault began."""
    ended: dt.datetime | None = None
    """Wall-clock time its application returned (a restart is over by then)."""


class WorkerControl(Protocol):
    """What the injector needs from the fleet of worker processes (see ``Fleet``)."""

    def kill(self, slot: int, role: str = "worker") -> bool:
        """SIGKILL the worker (or beat) in ``slot``; False when none runs there."""
        ...

    def restart_missing(self) -> int:
        """Start a process in every slot whose process is gone."""
        ...

    def stop(self, slot: int) -> bool:
        """SIGSTOP the worker in ``slot``; False when none runs there."""
        ...

    def cont(self, slot: int) -> None:
        """SIGCONT the worker in ``slot``."""
        ...

    def term(self, slot: int) -> bool:
        """SIGTERM the worker in ``slot`` (graceful shutdown); False when none runs."""
        ...

    def restart(self, slot: int) -> None:
        """Start a fresh worker in ``slot`` once the old one is gone."""
        ...

    def start_twin(self, slot: int) -> None:
        """Start a second worker with the id of the one in ``slot`` (which sleeps)."""
        ...

    def retire_twin(self, slot: int) -> None:
        """Gracefully stop the older process of ``slot`` once its twin took over."""
        ...

    def worker_id(self, slot: int) -> str:
        """The worker id of ``slot``."""
        ...


class FaultInjector:
    """Applies planned faults on its own thread and records what happened."""

    def __init__(
        self,
        *,
        events: Iterable[FaultEvent],
        workers: WorkerControl,
        dsn: str,
        server: LocalPostgres | None,
        harness_app_name: str,
        started: float,
        stop_event: threading.Event,
        on_record: Callable[[FaultRecord], None] | None = None,
    ) -> None:
        self.events = sorted(events, key=lambda e: e.at)
        self.workers = workers
        self.dsn = dsn
        self.server = server
        self.harness_app_name = harness_app_name
        self.started = started
        self.stop_event = stop_event
        self.on_record = on_record
        self.records: list[FaultRecord] = []
        self._lock = threading.Lock()
        self._pending: list[threading.Thread] = []
        self._frozen: set[int] = set()  # server processes stopped by db-freeze
        self._thread = threading.Thread(target=self._run, name="reproq-stress-faults", daemon=True)

    @property
    def injected(self) -> int:
        """Faults applied so far."""
        with self._lock:
            return sum(1 for r in self.records if r.ok)

    def start(self) -> None:
        """Start applying faults at their planned times."""
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the plan to end and every fault's aftermath (restarts, SIGCONT)."""
        self._thread.join(timeout)
        for thread in list(self._pending):
            thread.join(timeout)

    def thaw(self) -> None:
        """SIGCONT every server process a db-freeze still holds stopped (at once; also
        when the run is being cut short)."""
        with self._lock:
            frozen, self._frozen = set(self._frozen), set()
        for pid in frozen:
            self._continue(pid)

    def _run(self) -> None:
        for event in self.events:
            delay = self.started + event.at - time.monotonic()
            if delay > 0 and self.stop_event.wait(delay):
                return
            if self.stop_event.is_set():
                return
            at = time.monotonic() - self.started
            began = dt.datetime.now(dt.UTC)
            try:
                ok, note = self._apply(event)
            except (ReproqError, OSError) as exc:
                ok, note = False, f"failed: {exc}"
            logger.debug("fault %s: %s", event.describe(), note or ("ok" if ok else "skipped"))
            record = FaultRecord(
                at=at, event=event, ok=ok, note=note, began=began, ended=dt.datetime.now(dt.UTC)
            )
            with self._lock:
                self.records.append(record)
            if self.on_record is not None:
                self.on_record(record)

    def _later(self, seconds: float, action: Callable[[], None]) -> None:
        """Run ``action`` after ``seconds`` (even when the run is stopping: a stopped
        worker must always be continued, a killed one restarted)."""

        def run() -> None:
            time.sleep(seconds)
            try:
                action()
            except (ReproqError, OSError) as exc:
                logger.warning("fault aftermath failed: %s", exc)

        thread = threading.Thread(target=run, name="reproq-stress-fault-aftermath", daemon=True)
        self._pending.append(thread)
        thread.start()

    def _apply(self, event: FaultEvent) -> tuple[bool, str]:
        slot = event.target
        if event.kind is FaultKind.KILL and event.variant == "beat":
            if not self.workers.kill(slot, "beat"):
                return False, "no live beat in that slot"
            self._later(event.seconds, self._restart_missing)
            return True, ""
        if event.kind is FaultKind.KILL:
            if not self.workers.kill(slot):
                return False, "no live worker in that slot"
            self._later(event.seconds, lambda: self.workers.restart(slot))
            return True, ""
        if event.kind is FaultKind.STOP:
            if not self.workers.stop(slot):
                return False, "no live worker in that slot"
            if event.variant == "twin":
                self.workers.start_twin(slot)

                def wake_and_retire() -> None:
                    self.workers.cont(slot)
                    self.workers.retire_twin(slot)

                self._later(event.seconds, wake_and_retire)
            else:
                self._later(event.seconds, lambda: self.workers.cont(slot))
            return True, ""
        if event.kind is FaultKind.TERM:
            if not self.workers.term(slot):
                return False, "no live worker in that slot"
            self._later(event.seconds, lambda: self.workers.restart(slot))
            return True, ""
        if event.kind is FaultKind.DB_KILL:
            return True, f"terminated {self._terminate_clients()} connections"
        if event.kind is FaultKind.DB_RESTART:
            return self._restart_server(event.variant)
        if event.kind is FaultKind.SLOW:
            self._later(0.0, lambda: self._hold_lock(event.variant, event.seconds))
            return True, ""
        if event.kind is FaultKind.DB_FREEZE:
            return self._freeze(slot, event.seconds)
        return False, "unknown fault"

    def _restart_missing(self) -> None:
        self.workers.restart_missing()

    def _terminate_clients(self) -> int:
        conn = connect(self.dsn, application_name=self.harness_app_name)
        try:
            with translate_errors():
                row = conn.execute(
                    q("stress_terminate_clients"), {"spared": "reproq-stress%"}
                ).fetchone()
            return int(row["terminated"]) if row else 0
        finally:
            conn.close()

    def _restart_server(self, variant: str) -> tuple[bool, str]:
        if self.server is None:
            return False, "no local server to restart"
        began = time.monotonic()
        self.thaw()  # a stopped server process would hold up a clean shutdown
        if variant == "crash":
            self.server.kill()
            self.server.start()
        else:
            self.server.restart("fast")
        return True, f"{variant or 'fast'} restart took {time.monotonic() - began:.1f}s"

    def _freeze(self, slot: int, seconds: float) -> tuple[bool, str]:
        server = self.server
        if server is None:
            return False, "no local server: its processes cannot be stopped"
        conn = connect(self.dsn, application_name=self.harness_app_name)
        try:
            with translate_errors():
                rows = conn.execute(
                    q("stress_worker_backends"),
                    {"application_name": f"reproq-worker {self.workers.worker_id(slot)}"},
                ).fetchall()
        finally:
            conn.close()
        # Only processes of our own server: a pid from pg_stat_activity is signalled here.
        pids = sorted(int(r["pid"]) for r in rows if server.owns_process(int(r["pid"])))
        if not pids:
            return False, "the worker has no control connection now"
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        with self._lock:
            self._frozen.update(pids)

        def thaw() -> None:
            for pid in pids:
                with self._lock:
                    if pid not in self._frozen:
                        continue  # thawed already
                    self._frozen.discard(pid)
                self._continue(pid)

        self._later(seconds, thaw)
        return True, f"stopped server process {', '.join(map(str, pids))}"

    @staticmethod
    def _continue(pid: int) -> None:
        # Gone meanwhile (a crash restart killed it) is fine: nothing left to continue.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

    def _hold_lock(self, variant: str, seconds: float) -> None:
        conn = connect(self.dsn, autocommit=False, application_name=self.harness_app_name)
        try:
            with translate_errors():
                if variant == "rows":
                    conn.execute(q("stress_lock_running_rows"), {"limit": 1000})
                else:
                    conn.execute(q("stress_lock_task_runs"))
                conn.execute(q("stress_sleep"), {"seconds": seconds})
                conn.rollback()
        finally:
            conn.close()
