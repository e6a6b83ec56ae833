"""``reproq torture``: drive real workers through faults, then prove nothing went wrong.

A run has four phases:

1. **Prepare** a database: a throwaway PostgreSQL of our own by default (so the server
   itself can be restarted), or the database given with ``--dsn``. Migrate it, create
   the execution ledger, a rate-limited queue and a few every-minute schedules.
2. **Load**: real ``reproq worker`` processes (and racing ``reproq beat`` processes) run
   while the harness enqueues a seeded mix of work (:mod:`reproq.stress.workload`),
   cancels some of it, and injects seeded faults (:mod:`reproq.stress.faults`).
3. **Drain**: enqueueing and faults stop, beats are stopped, dead workers restarted;
   the harness waits (bounded) until nothing is due or RUNNING, then SIGTERMs the
   workers.
4. **Check**: the rows, the ledger and the harness's own facts go through
   :func:`reproq.stress.checker.check`; the report says which invariants held.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from reproq.db import Conn, connect, translate_errors
from reproq.errors import ActionNotAllowed, DatabaseError, TaskNotFound, UsageError
from reproq.ops import admin
from reproq.pg.cluster import LocalPostgres
from reproq.producer.client import Client
from reproq.queries import q
from reproq.stress.checker import check, evidence
from reproq.stress.faults import (
    DEFAULT_FAULTS,
    FaultInjector,
    FaultKind,
    FaultRecord,
    plan_faults,
)
from reproq.stress.fleet import Fleet, WorkerSettings
from reproq.stress.ledger import LEDGER_APP_NAME, with_app_name
from reproq.stress.preparation import TORTURE_SETTINGS, TortureDatabase, prepare, torture_database
from reproq.stress.report import Progress, TortureReport
from reproq.stress.snapshot import RunFacts, load_snapshot
from reproq.stress.workload import (
    THROTTLED_QUEUE,
    Batch,
    Workload,
)

__all__ = ["EXECUTOR_MODES", "TORTURE_SETTINGS", "TortureConfig", "run_torture"]

logger = logging.getLogger("reproq.stress.torture")

HARNESS_APP_NAME = "reproq-stress-harness"
"""application_name of the harness's own connections (spared by connection faults)."""

EXECUTOR_MODES = ("mixed", "thread", "subprocess")
"""``--executor`` choices: ``mixed`` runs the first worker with the ``subprocess``
executor and the others with ``thread``."""

SUBPROCESS_SLOTS = 4
"""Concurrency of a ``subprocess`` worker in a torture fleet: each task there starts two
interpreters, and a few at a time is what a small machine carries beside the rest."""

_TICK = 0.2
"""Seconds between enqueue rounds."""

_STARTUP_GRACE = dt.timedelta(seconds=15)
"""A process that ends this soon after it started died in its start-up."""

_OUTAGE_MARGIN = dt.timedelta(seconds=3)
"""Slack around a database fault's recorded span (connections die a little after)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TortureConfig:
    """Everything a torture run can be told."""

    duration: float = 300.0
    """Seconds of load (enqueueing and faults); the drain comes on top."""
    workers: int = 4
    concurrency: int = 50
    connections: int = 1
    """Lanes per worker process (``reproq worker --connections``)."""
    tasks: int | None = None
    """Stop enqueueing after this many workload items (default: ``rate`` x duration)."""
    rate: float = 60.0
    """Workload items enqueued per second (a chain or chord is one item)."""
    faults: tuple[FaultKind, ...] = DEFAULT_FAULTS
    fault_interval: float | None = None
    """Mean seconds between faults (default: scaled to the duration, 2-6 s)."""
    seed: int | None = None
    dsn: str | None = None
    """Run in this database instead of a throwaway server's."""
    server: LocalPostgres | None = None
    """The server behind ``dsn``, when the caller controls it (allows ``db-restart``)."""
    executor: str = "mixed"
    """``mixed`` (worker 0 runs the ``subprocess`` executor, the others ``thread``),
    ``thread`` or ``subprocess`` (every worker, at :data:`SUBPROCESS_SLOTS` slots)."""
    lease_seconds: float = 4.0
    heartbeat_seconds: float = 1.0
    reclaim_interval_seconds: float = 1.0
    shutdown_timeout: float = 10.0
    drain_timeout: float = 90.0
    beats: int = 2
    log_dir: Path | None = None
    """Where process logs go (default: a temp directory, removed when the run passes)."""
    extra_worker_args: tuple[str, ...] = ()

    def resolved_seed(self) -> int:
        """The seed to use (a random one when none was given)."""
        return self.seed if self.seed is not None else secrets.randbelow(2**31)


@dataclass(kw_only=True, slots=True)
class _State:
    """Counters the load loop keeps."""

    enqueued_ids: set[int] = field(default_factory=set)
    items: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    enqueue_errors: int = 0
    cancels: dict[int, dt.datetime] = field(default_factory=dict)
    cancel_attempts: dict[int, int] = field(default_factory=dict)


def run_torture(config: TortureConfig, *, progress: Progress | None = None) -> TortureReport:
    """Run a torture session and return its report (``report.ok`` says if it passed)."""
    if config.workers < 1 or config.concurrency < 1:
        raise UsageError("--workers and --concurrency must be at least 1")
    if not 1 <= config.connections <= config.concurrency:
        raise UsageError("--connections must be between 1 and --concurrency")
    if config.duration <= 0:
        raise UsageError("--duration must be positive")
    progress = progress or Progress()
    seed = config.resolved_seed()
    own_logs = config.log_dir is None
    log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="reproq-torture-"))
    if config.executor not in EXECUTOR_MODES:
        raise UsageError(f"--executor must be one of {', '.join(EXECUTOR_MODES)}")
    need_local = any(kind.needs_local_server for kind in config.faults)
    with torture_database(
        dsn=config.dsn, server=config.server, need_local=need_local, progress=progress
    ) as db:
        report = _Torture(config, db, seed, log_dir, progress).run()
    if own_logs and report.ok:
        shutil.rmtree(log_dir, ignore_errors=True)
        report = dataclasses.replace(report, log_dir="")
    return report


class _Torture:
    def __init__(
        self,
        config: TortureConfig,
        db: TortureDatabase,
        seed: int,
        log_dir: Path,
        progress: Progress,
    ) -> None:
        self.config = config
        self.db = db
        self.seed = seed
        self.log_dir = log_dir
        self.progress = progress
        self.run_id = f"{seed:x}"[-8:]
        self.state = _State()
        self.notes: list[str] = []
        faults = list(config.faults)
        for kind in [k for k in faults if k.needs_local_server and db.server is None]:
            faults.remove(kind)
            self.notes.append(f"{kind} skipped: the server is not one this run controls")
        self.faults = tuple(faults)
        self.rng = random.Random(seed ^ 0x5EED)

    def _conn(self) -> Conn:
        return connect(self.db.dsn, application_name=HARNESS_APP_NAME)

    def _show_fault(self, record: FaultRecord) -> None:
        outcome = record.note or ("ok" if record.ok else "skipped")
        self.progress.note(f"  fault at {record.at:5.1f}s: {record.event.describe()}: {outcome}")

    def _db_answers(self) -> bool:
        try:
            self._conn().close()
        except DatabaseError:
            return False
        return True

    def _unexpected_exits(
        self, fleet: Fleet, injector: FaultInjector
    ) -> tuple[tuple[str, ...], list[str]]:
        """(violations, notes): processes that ended on their own. One that died during
        its start-up while a database fault was under way only failed to start (the
        harness started another); any other is a violation."""
        outages = [
            (r.began, r.ended)
            for r in injector.records
            if r.ok
            and r.began is not None
            and r.ended is not None
            and r.event.kind in (FaultKind.DB_RESTART, FaultKind.DB_KILL)
        ]
        violations: list[str] = []
        notes: list[str] = []
        for r in fleet.unexpected_exits():
            line = (
                f"{r.role} {r.name} (pid {r.pid}) exited with code {r.returncode}; see {r.log_path}"
            )
            ended = r.ended_at or r.started_at
            in_startup = ended - r.started_at < _STARTUP_GRACE
            near_outage = any(
                began - _OUTAGE_MARGIN <= ended and until + _OUTAGE_MARGIN >= r.started_at
                for began, until in outages
            )
            if in_startup and near_outage:
                notes.append(f"start-up failed during a database fault (restarted): {line}")
            else:
                violations.append(line)
        return tuple(violations), notes

    # ------------------------------------------------------------------ phases

    def run(self) -> TortureReport:
        began = time.monotonic()
        cfg = self.config
        prepared = prepare(self.db, run_id=self.run_id, beats=cfg.beats, connect=self._conn)
        self.notes.extend(prepared.notes)
        first_id, schedule_names = prepared.first_id, prepared.schedule_names
        fleet = Fleet(
            dsn=self.db.dsn,
            workers=cfg.workers,
            settings=WorkerSettings(
                concurrency=cfg.concurrency,
                executor="thread",
                subprocess_slots=_subprocess_slots(cfg),
                subprocess_concurrency=max(SUBPROCESS_SLOTS, cfg.connections),
                queues=("default", THROTTLED_QUEUE),
                lease_seconds=cfg.lease_seconds,
                heartbeat_seconds=cfg.heartbeat_seconds,
                reclaim_interval_seconds=cfg.reclaim_interval_seconds,
                shutdown_timeout=cfg.shutdown_timeout,
                extra_args=(
                    *(("--connections", str(cfg.connections)) if cfg.connections > 1 else ()),
                    *cfg.extra_worker_args,
                ),
            ),
            log_dir=self.log_dir,
            ledger_dsn=with_app_name(self.db.dsn, LEDGER_APP_NAME),
            beats=cfg.beats,
            id_prefix=f"torture-{self.run_id}",
            ready=self._db_answers,
        )
        interval = cfg.fault_interval or min(6.0, max(2.0, cfg.duration / 12))
        plan = plan_faults(
            seed=self.seed,
            duration=cfg.duration,
            kinds=self.faults,
            workers=cfg.workers,
            beats=cfg.beats,
            lease_seconds=cfg.lease_seconds,
            mean_interval=interval,
        )
        stop = threading.Event()
        load_started = time.monotonic()
        injector = FaultInjector(
            events=plan,
            workers=fleet,
            dsn=self.db.dsn,
            server=self.db.server,
            harness_app_name=HARNESS_APP_NAME,
            started=load_started,
            stop_event=stop,
            on_record=self._show_fault,
        )
        self.progress.note(
            f"torture: seed {self.seed}, {self._describe_fleet()}, "
            f"{cfg.duration:g}s load, {len(plan)} faults planned "
            f"({', '.join(self.faults) or 'none'})"
        )
        fleet.start()
        quiesced: dt.datetime | None = None
        drain_started = load_ended = time.monotonic()
        try:
            injector.start()
            self._load(fleet, injector, first_id, load_started)
            load_ended = time.monotonic()
            stop.set()
            injector.join(timeout=cfg.shutdown_timeout + 20)
            drain_started = time.monotonic()
            quiesced = self._drain(fleet, injector, first_id, schedule_names, load_started)
        finally:
            stop.set()
            injector.thaw()
            self.progress.done()
            self.progress.note("stopping workers…")
            fleet.shutdown()
        drain_ended = time.monotonic()
        return self._check(
            fleet=fleet,
            injector=injector,
            first_id=first_id,
            schedule_names=schedule_names,
            quiesced=quiesced,
            server_info=prepared.server_info,
            planned=len(plan),
            elapsed=time.monotonic() - began,
            load_seconds=load_ended - load_started,
            drain_seconds=drain_ended - drain_started,
        )

    def _describe_fleet(self) -> str:
        cfg = self.config
        lanes = f" on {cfg.connections} connections" if cfg.connections > 1 else ""
        if cfg.executor == "thread":
            return f"{cfg.workers} workers x {cfg.concurrency}{lanes}"
        sub = len(_subprocess_slots(cfg))
        slots = max(SUBPROCESS_SLOTS, cfg.connections)
        fleet = f"{sub} subprocess worker{'s' if sub > 1 else ''} x {slots}"
        if cfg.workers > sub:
            fleet += f" + {cfg.workers - sub} thread workers x {cfg.concurrency}"
        return fleet + lanes

    def _load(self, fleet: Fleet, injector: FaultInjector, first_id: int, started: float) -> None:
        cfg = self.config
        workload = Workload(seed=self.seed, run_id=self.run_id)
        limit = cfg.tasks
        rate = cfg.rate if limit is None else limit / cfg.duration
        next_status = next_cancel = 0.0
        with Client(with_app_name(self.db.dsn, "reproq-stress-enqueue")) as client:
            while True:
                elapsed = time.monotonic() - started
                if elapsed >= cfg.duration:
                    break
                want = int(rate * elapsed)
                if limit is not None:
                    want = min(want, limit)
                if want > self.state.items:
                    self._enqueue(client, workload.batch(want - self.state.items))
                if elapsed >= next_cancel:
                    next_cancel = elapsed + 1.5
                    self._maybe_cancel(first_id)
                if elapsed >= next_status:
                    next_status = elapsed + 1.0
                    fleet.restart_missing()
                    self._show(first_id, elapsed, injector, "load")
                time.sleep(_TICK)

    def _enqueue(self, client: Client, batch: Batch) -> None:
        try:
            if batch.tasks:
                self.state.enqueued_ids.update(client.enqueue_many(batch.tasks))
            for chain in batch.chains:
                self.state.enqueued_ids.update(client.chain(chain).result_ids)
            for chord in batch.chords:
                ids = client.chord(chord.members, chord.callback)
                self.state.enqueued_ids.update(ids.result_ids)
                if ids.callback_id is not None:
                    self.state.enqueued_ids.add(ids.callback_id)
        except (DatabaseError, psycopg.Error, PoolTimeout) as exc:
            # Faults hit the enqueuer too; the items of a failed batch are simply not
            # part of the run (rows a commit of unknown outcome left are still checked).
            self.state.enqueue_errors += 1
            logger.debug("enqueue failed: %s", exc)
            return
        self.state.items += sum(batch.counts.values())
        for kind, n in batch.counts.items():
            self.state.by_kind[kind] = self.state.by_kind.get(kind, 0) + n

    def _maybe_cancel(self, first_id: int) -> None:
        if self.rng.random() > 0.7:
            return
        try:
            with self._conn() as conn, translate_errors():
                candidates = [
                    int(r["result_id"])
                    for r in conn.execute(q("stress_cancel_candidates"), {"first_id": first_id})
                ]
                if not candidates:
                    return
                target = self.rng.choice(candidates)
                try:
                    with conn.transaction():
                        admin.cancel(conn, target)
                        row = conn.execute(
                            q("stress_cancelled_attempts"), {"result_id": target}
                        ).fetchone()
                except (ActionNotAllowed, TaskNotFound):
                    return  # finished in the meantime
                if row is not None:
                    self.state.cancels[target] = row["now"]
                    self.state.cancel_attempts[target] = int(row["attempts"])
        except DatabaseError as exc:
            logger.debug("cancel failed: %s", exc)

    def _status_counts(self, first_id: int) -> dict[str, int]:
        try:
            with self._conn() as conn, translate_errors():
                return {
                    str(r["status"]): int(r["n"])
                    for r in conn.execute(q("stress_status_counts"), {"first_id": first_id})
                }
        except DatabaseError:
            return {}

    def _show(self, first_id: int, elapsed: float, injector: FaultInjector, phase: str) -> None:
        counts = self._status_counts(first_id)
        done = counts.get("SUCCESSFUL", 0)
        failed = counts.get("FAILED", 0) + counts.get("CANCELLED", 0)
        self.progress.update(
            {
                phase: f"{elapsed:5.1f}s",
                "enqueued": len(self.state.enqueued_ids),
                "done": done,
                "failed": failed,
                "running": counts.get("RUNNING", 0),
                "faults": injector.injected,
                "tasks/s": (done + failed) / elapsed if elapsed > 0 else 0.0,
            }
        )

    def _drain(
        self,
        fleet: Fleet,
        injector: FaultInjector,
        first_id: int,
        schedule_names: frozenset[str],
        started: float,
    ) -> dt.datetime | None:
        self.progress.done()
        self.progress.note("load over: stopping beats and draining…")
        fleet.stop_beats()
        try:
            with self._conn() as conn:
                for name in sorted(schedule_names):
                    admin.set_schedule_enabled(conn, name, False)
        except DatabaseError as exc:
            logger.warning("could not disable the run's schedules: %s", exc)
        deadline = time.monotonic() + self.config.drain_timeout
        next_status = 0.0
        while time.monotonic() < deadline:
            fleet.restart_missing()
            try:
                with self._conn() as conn, translate_errors():
                    row = conn.execute(q("stress_drain_state"), {"first_id": first_id}).fetchone()
            except DatabaseError:
                row = None
            if row is not None and int(row["due"]) == 0 and int(row["running"]) == 0:
                return row["now"]  # type: ignore[no-any-return]
            now = time.monotonic()
            if now >= next_status:
                next_status = now + 1.0
                self._show(first_id, now - started, injector, "drain")
            time.sleep(0.3)
        self.notes.append(f"drain gave up after {self.config.drain_timeout:g}s")
        return None

    def _check(
        self,
        *,
        fleet: Fleet,
        injector: FaultInjector,
        first_id: int,
        schedule_names: frozenset[str],
        quiesced: dt.datetime | None,
        server_info: dict[str, Any],
        planned: int,
        elapsed: float,
        load_seconds: float,
        drain_seconds: float,
    ) -> TortureReport:
        self.progress.note("checking invariants…")
        exit_violations, exit_notes = self._unexpected_exits(fleet, injector)
        self.notes.extend(exit_notes)
        with self._conn() as conn, translate_errors():
            now_row = conn.execute(q("stress_now")).fetchone()
            checked_at = now_row["now"] if now_row else dt.datetime.now(dt.UTC)
            facts = RunFacts(
                enqueued_ids=frozenset(self.state.enqueued_ids),
                cancel_requests=dict(self.state.cancels),
                cancel_attempts=dict(self.state.cancel_attempts),
                process_exits=fleet.process_exits(),
                quiesced_at=quiesced,
                checked_at=checked_at,
                schedule_names=schedule_names,
                processes=len(fleet.records),
                unexpected_exits=exit_violations,
            )
            snapshot = load_snapshot(conn, first_id=first_id, facts=facts)
        results = check(snapshot)
        final: dict[str, int] = {}
        for task in snapshot.tasks:
            final[task.status] = final.get(task.status, 0) + 1
        notes = list(self.notes)
        if self.state.enqueue_errors:
            notes.append(f"{self.state.enqueue_errors} enqueue batches failed under faults")
        cfg = self.config
        return TortureReport(
            settings={
                "seed": self.seed,
                "duration": cfg.duration,
                "workers": cfg.workers,
                "concurrency": cfg.concurrency,
                "connections": cfg.connections,
                "executor": cfg.executor,
                "rate": cfg.rate if cfg.tasks is None else cfg.tasks / cfg.duration,
                "tasks": cfg.tasks,
                "faults": list(self.faults),
                "lease_seconds": cfg.lease_seconds,
                "heartbeat_seconds": cfg.heartbeat_seconds,
                "beats": cfg.beats,
            },
            server=server_info,
            elapsed_seconds=elapsed,
            load_seconds=load_seconds,
            drain_seconds=drain_seconds,
            drained=quiesced is not None,
            enqueued=len(self.state.enqueued_ids),
            enqueued_by_kind=dict(self.state.by_kind),
            final_status=final,
            executions=len(snapshot.executions),
            cancels=len(self.state.cancels),
            faults_planned=planned,
            faults=list(injector.records),
            unexpected_exits=list(exit_violations),
            results=results,
            evidence=evidence(snapshot),
            log_dir=str(self.log_dir),
            notes=notes,
        )


def _subprocess_slots(config: TortureConfig) -> frozenset[int]:
    """The worker slots that run the ``subprocess`` executor."""
    if config.executor == "subprocess":
        return frozenset(range(config.workers))
    if config.executor == "mixed":
        return frozenset({0})
    return frozenset()
