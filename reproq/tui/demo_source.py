"""Generated data for ``reproq tui --demo``: a small, believable queue held in memory.

The demo behaves like the real thing: the same value types as :mod:`reproq.ops.observe`,
the same rules and errors as :mod:`reproq.ops.admin` (retry only FAILED, replay refused
while an identical spec is active, cancel cascades to waiting children). Time comes from
the injected clock; as it moves, a simulated fleet claims, finishes and enqueues tasks.
With a fixed seed and a fake clock the data is the same on every run.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

from reproq.clock import Clock
from reproq.errors import ActionNotAllowed, AlreadyQueued, NotFound, TaskNotFound
from reproq.models import TaskStatus
from reproq.ops.admin import (
    SKIP_DUPLICATE,
    SKIP_FINISHED,
    SKIP_NOT_FAILED,
    SKIP_NOT_FOUND,
    BulkResult,
    CancelOutcome,
    CancelResult,
    QueueState,
    ReplayResult,
    RetryResult,
    ScheduleState,
)
from reproq.ops.observe import (
    DEFAULT_COUNT_CAP,
    AttemptError,
    ConcurrencyUse,
    FailingTask,
    QueueInfo,
    RateLimit,
    ScheduleInfo,
    StatusSummary,
    TaskDetail,
    TaskFilter,
    TaskOrder,
    TaskRef,
    TaskRow,
    ThroughputBucket,
    WorkerInfo,
)
from reproq.spec import build_spec, spec_hash
from reproq.tui.live import Listener
from reproq.tui.source import OverviewData, next_schedule

__all__ = ["DemoSource"]

_S = TaskStatus

_TASKS: tuple[tuple[str, str, float], ...] = (
    # task path, queue, failure probability
    ("billing.charge_card", "billing", 0.15),
    ("billing.send_invoice", "billing", 0.02),
    ("emails.send_welcome", "emails", 0.03),
    ("emails.send_digest", "emails", 0.05),
    ("reports.build_daily", "reports", 0.1),
    ("media.resize_image", "default", 0.04),
    ("search.reindex_document", "default", 0.01),
)

_ERRORS: dict[str, tuple[str, str]] = {
    "billing.charge_card": ("CardDeclined", "card declined by issuer (code 51)"),
    "billing.send_invoice": ("TimeoutError", "SMTP relay did not answer in 30 s"),
    "emails.send_welcome": ("SMTPRecipientsRefused", "recipient address rejected"),
    "emails.send_digest": ("KeyError", "'unsubscribe_url'"),
    "reports.build_daily": ("MemoryError", "report too large for the worker"),
    "media.resize_image": ("OSError", "cannot identify image file"),
    "search.reindex_document": ("ConnectionError", "search cluster unreachable"),
}

_WORKERS: tuple[tuple[str, str, tuple[str, ...], int], ...] = (
    ("web-1:4121", "web-1", ("default", "emails"), 8),
    ("web-2:3377", "web-2", ("default", "emails"), 8),
    ("batch-1:918", "batch-1", ("billing", "reports"), 4),
    ("batch-2:77", "batch-2", ("billing", "reports"), 4),
)

_SIM_STEP = 1.0
_MAX_STEPS = 120
_KEEP_FINISHED = 400


@dataclass(kw_only=True, slots=True)
class _Run:
    """A mutable task row of the in-memory queue."""

    result_id: int
    task_path: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    status: TaskStatus
    enqueued_at: dt.datetime
    priority: int = 0
    run_after: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    failed_at: dt.datetime | None = None
    attempts: int = 0
    max_attempts: int = 3
    leased_by: str | None = None
    leased_until: dt.datetime | None = None
    worker_ids: list[str] = field(default_factory=list)
    errors: list[AttemptError] = field(default_factory=list)
    last_error: str | None = None
    return_value: Any = None
    cancel_requested: bool = False
    parent_id: int | None = None
    workflow_id: uuid.UUID | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    logs_uri: str | None = None

    @property
    def spec(self) -> dict[str, Any]:
        return build_spec(self.task_path, self.args, self.kwargs, queue_name=self.queue)

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.spec)

    def row(self) -> TaskRow:
        return TaskRow(
            result_id=self.result_id,
            task_path=self.task_path,
            queue_name=self.queue,
            status=self.status,
            priority=self.priority,
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            enqueued_at=self.enqueued_at,
            run_after=self.run_after,
            started_at=self.started_at,
            finished_at=self.finished_at,
            leased_by=self.leased_by,
            leased_until=self.leased_until,
            last_error=self.last_error,
            cancel_requested=self.cancel_requested,
            parent_id=self.parent_id,
            workflow_id=self.workflow_id,
            worker_ids=tuple(self.worker_ids),
        )

    def ref(self) -> TaskRef:
        return TaskRef(
            result_id=self.result_id,
            status=self.status,
            task_path=self.task_path,
            queue_name=self.queue,
        )


@dataclass(kw_only=True, slots=True)
class _Worker:
    worker_id: str
    hostname: str
    queues: tuple[str, ...]
    concurrency: int
    started_at: dt.datetime
    last_seen_at: dt.datetime


@dataclass(kw_only=True, slots=True)
class _Schedule:
    name: str
    cron: str
    timezone: str
    task_path: str
    queue: str
    every: dt.timedelta
    next_run_at: dt.datetime
    last_run_at: dt.datetime | None
    enabled: bool = True


class DemoSource:
    """A :class:`~reproq.tui.source.DataSource` over generated, simulated data.

    Deterministic for a given ``seed`` and clock; thread-safe.
    """

    def __init__(self, clock: Clock, *, seed: int = 7) -> None:
        self._clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._runs: dict[int, _Run] = {}
        self._next_id = 1000
        self._paused: dict[str, tuple[dt.datetime, str | None]] = {}
        now = clock.now()
        self._sim_time = now
        self._workers = [
            _Worker(
                worker_id=wid,
                hostname=host,
                queues=queues,
                concurrency=conc,
                started_at=now - dt.timedelta(hours=5, minutes=17 * i),
                last_seen_at=now - dt.timedelta(seconds=4 + 3 * i),
            )
            for i, (wid, host, queues, conc) in enumerate(_WORKERS)
        ]
        # One worker stopped heartbeating a while ago: it shows as stale.
        self._workers.append(
            _Worker(
                worker_id="batch-0:4411",
                hostname="batch-0",
                queues=("billing",),
                concurrency=4,
                started_at=now - dt.timedelta(days=2),
                last_seen_at=now - dt.timedelta(minutes=42),
            )
        )
        self._schedules = [
            _Schedule(
                name="nightly-report",
                cron="0 2 * * *",
                timezone="Europe/Berlin",
                task_path="reports.build_daily",
                queue="reports",
                every=dt.timedelta(days=1),
                next_run_at=now + dt.timedelta(hours=3, minutes=12),
                last_run_at=now - dt.timedelta(hours=20, minutes=48),
            ),
            _Schedule(
                name="digest-emails",
                cron="*/15 * * * *",
                timezone="UTC",
                task_path="emails.send_digest",
                queue="emails",
                every=dt.timedelta(minutes=15),
                next_run_at=now + dt.timedelta(minutes=6),
                last_run_at=now - dt.timedelta(minutes=9),
            ),
            _Schedule(
                name="reindex-search",
                cron="30 * * * *",
                timezone="UTC",
                task_path="search.reindex_document",
                queue="default",
                every=dt.timedelta(hours=1),
                next_run_at=now + dt.timedelta(minutes=27),
                last_run_at=now - dt.timedelta(minutes=33),
            ),
            _Schedule(
                name="invoice-run",
                cron="0 6 1 * *",
                timezone="UTC",
                task_path="billing.send_invoice",
                queue="billing",
                every=dt.timedelta(days=30),
                next_run_at=now + dt.timedelta(days=3),
                last_run_at=None,
                enabled=False,
            ),
        ]
        self._paused["reports"] = (now - dt.timedelta(minutes=25), "month-end freeze")
        self._seed_history(now)

    # ------------------------------------------------------------------ generation

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _pick_task(self) -> tuple[str, str, float]:
        return _TASKS[self._rng.randrange(len(_TASKS))]

    def _args_for(self, task_path: str) -> tuple[list[Any], dict[str, Any]]:
        n = self._rng.randrange(1, 99_999)
        if task_path.startswith("billing."):
            return [f"cus_{n:05d}"], {"amount_cents": self._rng.randrange(500, 50_000)}
        if task_path.startswith("emails."):
            return [f"user{n}@example.com"], {"locale": self._rng.choice(["en", "de", "fr"])}
        if task_path.startswith("reports."):
            return [], {"day": "2026-11-27", "tenant": n % 40}
        return [n], {}

    def _add(self, task_path: str, queue: str, status: TaskStatus, at: dt.datetime) -> _Run:
        args, kwargs = self._args_for(task_path)
        run = _Run(
            result_id=self._new_id(),
            task_path=task_path,
            queue=queue,
            args=args,
            kwargs=kwargs,
            status=status,
            enqueued_at=at,
            priority=self._rng.choice([0, 0, 0, 5, 10]),
        )
        self._runs[run.result_id] = run
        return run

    def _fail_attempt(self, run: _Run, at: dt.datetime, worker: str) -> None:
        cls, message = _ERRORS[run.task_path]
        tb = "".join(
            traceback.format_list(
                [
                    (
                        "/srv/app/reproq/executors/thread.py",
                        88,
                        "run",
                        "result = fn(*args, **kwargs)",
                    ),
                    (f"/srv/app/{run.task_path.replace('.', '/')}.py", 41, "run", "client.call()"),
                ]
            )
        )
        run.errors.append(
            AttemptError(
                kind="app_error",
                message=message,
                exception_class=cls,
                traceback=f"Traceback (most recent call last):\n{tb}{cls}: {message}\n",
                attempt=run.attempts,
                at=at.isoformat(),
                worker_id=worker,
            )
        )
        run.last_error = f"{cls}: {message}"

    def _seed_history(self, now: dt.datetime) -> None:
        rng = self._rng
        # Finished work over the last hour.
        for i in range(220):
            task_path, queue, fail_p = self._pick_task()
            at = now - dt.timedelta(seconds=3600 - i * 16 + rng.randrange(0, 10))
            worker = self._workers[rng.randrange(4)].worker_id
            run = self._add(task_path, queue, _S.SUCCESSFUL, at - dt.timedelta(seconds=30))
            run.attempts = 1
            run.worker_ids = [worker]
            run.started_at = at - dt.timedelta(seconds=rng.randrange(1, 20))
            run.finished_at = at
            if rng.random() < fail_p * 1.5:
                run.attempts = run.max_attempts
                run.status = _S.FAILED
                run.failed_at = at
                for attempt in range(1, run.max_attempts + 1):
                    run.attempts = attempt
                    self._fail_attempt(
                        run, at - dt.timedelta(minutes=run.max_attempts - attempt), worker
                    )
            elif rng.random() < 0.02:
                run.status = _S.CANCELLED
                run.last_error = "cancelled by an operator"
            else:
                run.return_value = {"ok": True, "took_ms": rng.randrange(5, 4000)}
            if rng.random() < 0.3:
                run.logs_uri = f"s3://app-logs/reproq/{run.result_id}.log"
        # A chain: the first step failed, the rest waits.
        head = self._add("billing.charge_card", "billing", _S.FAILED, now - dt.timedelta(minutes=7))
        head.attempts = head.max_attempts
        head.worker_ids = ["batch-1:918"]
        head.started_at = now - dt.timedelta(minutes=6)
        head.finished_at = head.failed_at = now - dt.timedelta(minutes=4)
        self._fail_attempt(head, now - dt.timedelta(minutes=4), "batch-1:918")
        head.workflow_id = uuid.UUID(int=rng.getrandbits(128))
        child = self._add("billing.send_invoice", "billing", _S.WAITING, head.enqueued_at)
        child.parent_id = head.result_id
        child.workflow_id = head.workflow_id
        # Work in progress and waiting to run.
        for _ in range(9):
            task_path, queue, _p = self._pick_task()
            self._add(task_path, queue, _S.READY, now - dt.timedelta(seconds=rng.randrange(2, 400)))
        for _ in range(4):
            run = self._add(
                "reports.build_daily",
                "reports",
                _S.READY,
                now - dt.timedelta(minutes=rng.randrange(1, 25)),
            )
        for _ in range(3):
            task_path, queue, _p = self._pick_task()
            run = self._add(task_path, queue, _S.READY, now - dt.timedelta(seconds=30))
            run.run_after = now + dt.timedelta(minutes=rng.randrange(2, 50))
        for _ in range(6):
            task_path, queue, _p = self._pick_task()
            self._start(
                self._add(
                    task_path, queue, _S.READY, now - dt.timedelta(seconds=rng.randrange(5, 90))
                ),
                now,
            )

    # ------------------------------------------------------------------ simulation

    def _worker_for(self, queue: str) -> _Worker | None:
        alive = [w for w in self._workers[:4] if queue in w.queues]
        if not alive:
            return None
        load = {w.worker_id: 0 for w in alive}
        for run in self._runs.values():
            if run.status is _S.RUNNING and run.leased_by in load:
                load[run.leased_by] += 1
        free = [w for w in alive if load[w.worker_id] < w.concurrency]
        return free[self._rng.randrange(len(free))] if free else None

    def _start(self, run: _Run, now: dt.datetime) -> bool:
        worker = self._worker_for(run.queue)
        if worker is None:
            return False
        run.status = _S.RUNNING
        run.attempts += 1
        run.started_at = run.started_at or now
        run.leased_by = worker.worker_id
        run.leased_until = now + dt.timedelta(minutes=5)
        run.worker_ids.append(worker.worker_id)
        return True

    def _step(self, now: dt.datetime) -> None:
        rng = self._rng
        fail_p = {path: p for path, _q, p in _TASKS}
        for run in list(self._runs.values()):
            if run.status is not _S.RUNNING or rng.random() > 0.35:
                continue
            worker = run.leased_by or "?"
            run.leased_by = run.leased_until = None
            if run.cancel_requested:
                run.status = _S.FAILED
                run.finished_at = run.failed_at = now
                run.last_error = "cancelled"
            elif rng.random() < fail_p.get(run.task_path, 0.05):
                self._fail_attempt(run, now, worker)
                if run.attempts >= run.max_attempts:
                    run.status = _S.FAILED
                    run.finished_at = run.failed_at = now
                else:
                    run.status = _S.READY
                    run.run_after = now + dt.timedelta(seconds=30 * 2 ** (run.attempts - 1))
            else:
                run.status = _S.SUCCESSFUL
                run.finished_at = now
                run.return_value = {"ok": True, "took_ms": rng.randrange(5, 4000)}
                for waiting in self._runs.values():
                    if waiting.parent_id == run.result_id and waiting.status is _S.WAITING:
                        waiting.status = _S.READY
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            task_path, queue, _p = self._pick_task()
            self._add(task_path, queue, _S.READY, now)
        due = sorted(
            (
                r
                for r in self._runs.values()
                if r.status is _S.READY
                and r.queue not in self._paused
                and (r.run_after is None or r.run_after <= now)
            ),
            key=lambda r: (-r.priority, r.enqueued_at),
        )
        for run in due:
            self._start(run, now)
        for alive in self._workers[:4]:
            alive.last_seen_at = now - dt.timedelta(seconds=rng.randrange(0, 5))
        finished = sorted(
            (r for r in self._runs.values() if r.status is _S.SUCCESSFUL),
            key=lambda r: r.result_id,
        )
        for run in finished[: max(0, len(finished) - _KEEP_FINISHED)]:
            del self._runs[run.result_id]

    def _advance(self) -> dt.datetime:
        """Run the simulation up to the clock's now; returns now."""
        now = self._clock.now()
        steps = 0
        while self._sim_time + dt.timedelta(seconds=_SIM_STEP) <= now and steps < _MAX_STEPS:
            self._sim_time += dt.timedelta(seconds=_SIM_STEP)
            self._step(self._sim_time)
            steps += 1
        if self._sim_time + dt.timedelta(seconds=_SIM_STEP) <= now:
            self._sim_time = now  # skip what we could not simulate
        return now

    # ------------------------------------------------------------------ reads

    @property
    def label(self) -> str:
        """A demo has no database."""
        return "demo data (no database)"

    def _queue_infos(self, now: dt.datetime, window: dt.timedelta) -> list[QueueInfo]:
        names = sorted(
            {r.queue for r in self._runs.values()}
            | set(self._paused)
            | {q for w in self._workers for q in w.queues}
        )
        result = []
        since = now - window
        for name in names:
            runs = [r for r in self._runs.values() if r.queue == name]

            def count(status: TaskStatus, runs: list[_Run] = runs) -> int:
                return sum(1 for r in runs if r.status is status)

            ready = [r for r in runs if r.status is _S.READY]
            due = [r for r in ready if r.run_after is None or r.run_after <= now]
            oldest = min((r.enqueued_at for r in due), default=None)
            paused = self._paused.get(name)
            done = [r for r in runs if r.finished_at is not None and r.finished_at >= since]
            result.append(
                QueueInfo(
                    queue=name,
                    ready=len(due),
                    scheduled=len(ready) - len(due),
                    waiting=count(_S.WAITING),
                    running=count(_S.RUNNING),
                    successful=count(_S.SUCCESSFUL),
                    failed=count(_S.FAILED),
                    cancelled=count(_S.CANCELLED),
                    succeeded_in_window=sum(1 for r in done if r.status is _S.SUCCESSFUL),
                    failed_in_window=sum(1 for r in done if r.status is _S.FAILED),
                    cancelled_in_window=sum(1 for r in done if r.status is _S.CANCELLED),
                    oldest_ready_at=oldest,
                    oldest_ready_age_seconds=(now - oldest).total_seconds() if oldest else None,
                    paused=paused is not None,
                    paused_at=paused[0] if paused else None,
                    pause_reason=paused[1] if paused else None,
                    rate_limit=(
                        RateLimit(
                            key="queue:emails",
                            tokens_per_second=5.0,
                            burst_size=10,
                            current_tokens=7.5,
                            last_refilled_at=now,
                        )
                        if name == "emails"
                        else None
                    ),
                    concurrency=(
                        (ConcurrencyUse(key="card-network", running=count(_S.RUNNING), limit=4),)
                        if name == "billing"
                        else ()
                    ),
                )
            )
        return result

    def _worker_infos(self, now: dt.datetime) -> list[WorkerInfo]:
        running: dict[str, int] = {}
        for run in self._runs.values():
            if run.status is _S.RUNNING and run.leased_by:
                running[run.leased_by] = running.get(run.leased_by, 0) + 1
        return [
            WorkerInfo(
                worker_id=w.worker_id,
                hostname=w.hostname,
                concurrency=w.concurrency,
                queues=w.queues,
                started_at=w.started_at,
                last_seen_at=w.last_seen_at,
                last_seen_seconds=max(0.0, (now - w.last_seen_at).total_seconds()),
                version="0.1.0",
                stale=(now - w.last_seen_at) > dt.timedelta(minutes=3),
                running=running.get(w.worker_id, 0),
            )
            for w in sorted(self._workers, key=lambda w: w.worker_id)
        ]

    def _schedule_infos(self) -> list[ScheduleInfo]:
        return [
            ScheduleInfo(
                name=s.name,
                cron_expr=s.cron if s.timezone == "UTC" else f"CRON_TZ={s.timezone} {s.cron}",
                cron=s.cron,
                timezone=s.timezone,
                task_path=s.task_path,
                payload={},
                queue_name=s.queue,
                priority=0,
                max_attempts=3,
                concurrency_key=None,
                concurrency_limit=0,
                last_run_at=s.last_run_at,
                next_run_at=s.next_run_at,
                enabled=s.enabled,
                misfire_policy="coalesce",
                misfire_limit=0,
            )
            for s in sorted(self._schedules, key=lambda s: s.name)
        ]

    def overview(self, *, window: dt.timedelta) -> OverviewData:
        """Counts, throughput, failing tasks, workers, beat."""
        with self._lock:
            now = self._advance()
            queues = self._queue_infos(now, window)
            workers = self._worker_infos(now)
            totals = {str(s): sum(q.count(s) for q in queues) for s in TaskStatus}
            summary = StatusSummary(
                now=now,
                queues=tuple(queues),
                totals=totals,
                count_cap=DEFAULT_COUNT_CAP,
                window_seconds=window.total_seconds(),
                workers=tuple(workers),
                limits=(),
            )
            buckets = 30
            width = window / buckets
            start = now - window
            tp = []
            for i in range(buckets):
                lo, hi = start + width * i, start + width * (i + 1)
                done = [
                    r
                    for r in self._runs.values()
                    if r.finished_at is not None and lo <= r.finished_at < hi
                ]
                tp.append(
                    ThroughputBucket(
                        start=lo,
                        succeeded=sum(1 for r in done if r.status is _S.SUCCESSFUL),
                        failed=sum(1 for r in done if r.status is _S.FAILED),
                    )
                )
            failing: dict[str, list[_Run]] = {}
            for r in self._runs.values():
                if r.status is _S.FAILED and r.failed_at is not None and r.failed_at >= start:
                    failing.setdefault(r.task_path, []).append(r)
            top = sorted(
                (
                    FailingTask(
                        task_path=path,
                        failures=len(runs),
                        last_failed_at=max(r.failed_at for r in runs if r.failed_at),
                        last_error=max(runs, key=lambda r: r.result_id).last_error,
                    )
                    for path, runs in failing.items()
                ),
                key=lambda f: (-f.failures, f.task_path),
            )[:5]
            schedules = self._schedule_infos()
            return OverviewData(
                summary=summary,
                throughput=tuple(tp),
                failing=tuple(top),
                window=window,
                beat_leader="reproq-beat web-1",
                next_schedule=next_schedule(schedules),
                schedules_enabled=sum(1 for s in schedules if s.enabled),
            )

    def queues(self) -> list[QueueInfo]:
        """Every known queue."""
        with self._lock:
            now = self._advance()
            return self._queue_infos(now, dt.timedelta(hours=1))

    def _matches(self, run: _Run, flt: TaskFilter, now: dt.datetime) -> bool:
        if flt.statuses and run.status not in flt.statuses:
            return False
        if flt.queues and run.queue not in flt.queues:
            return False
        if flt.task_path and not fnmatchcase(run.task_path, flt.task_path):
            return False
        if flt.worker_id and flt.worker_id not in (run.leased_by, *run.worker_ids):
            return False
        if flt.result_ids and run.result_id not in flt.result_ids:
            return False
        age = now - run.enqueued_at
        if flt.min_age is not None and age < flt.min_age:
            return False
        return not (flt.max_age is not None and age > flt.max_age)

    def tasks(self, flt: TaskFilter, *, order: TaskOrder, limit: int) -> list[TaskRow]:
        """Task runs matching ``flt``."""
        with self._lock:
            now = self._advance()
            runs = sorted(
                (r for r in self._runs.values() if self._matches(r, flt, now)),
                key=lambda r: r.result_id,
                reverse=order is TaskOrder.NEWEST,
            )
            return [r.row() for r in runs[:limit]]

    def task(self, result_id: int) -> TaskDetail:
        """One task run in full."""
        with self._lock:
            self._advance()
            run = self._get(result_id)
            spec = run.spec
            replayed_from = run.metadata.get("replayed_from")
            source = self._runs.get(replayed_from) if isinstance(replayed_from, int) else None
            parent = self._runs.get(run.parent_id) if run.parent_id else None
            chain = (
                tuple(
                    r.ref()
                    for r in sorted(self._runs.values(), key=lambda r: r.result_id)
                    if r.workflow_id == run.workflow_id
                )
                if run.workflow_id
                else ()
            )
            return TaskDetail(
                result_id=run.result_id,
                backend_alias="default",
                queue_name=run.queue,
                priority=run.priority,
                run_after=run.run_after,
                spec=spec,
                spec_hash=spec_hash(spec),
                task_path=run.task_path,
                status=run.status,
                enqueued_at=run.enqueued_at,
                started_at=run.started_at,
                last_attempted_at=run.started_at,
                finished_at=run.finished_at,
                attempts=run.attempts,
                max_attempts=run.max_attempts,
                timeout_seconds=900,
                lock_key=None,
                concurrency_key="card-network" if run.queue == "billing" else None,
                concurrency_limit=4 if run.queue == "billing" else 0,
                worker_ids=tuple(run.worker_ids),
                return_value=run.return_value,
                errors=tuple(run.errors),
                metadata=dict(run.metadata),
                last_error=run.last_error,
                failed_at=run.failed_at,
                leased_until=run.leased_until,
                leased_by=run.leased_by,
                logs_uri=run.logs_uri,
                artifacts_uri=None,
                expires_at=None,
                parent_id=run.parent_id,
                workflow_id=run.workflow_id,
                wait_count=1 if run.status is _S.WAITING else 0,
                created_at=run.enqueued_at,
                updated_at=run.finished_at or run.started_at or run.enqueued_at,
                cancel_requested=run.cancel_requested,
                parent=parent.ref() if parent else None,
                children=tuple(
                    r.ref() for r in self._runs.values() if r.parent_id == run.result_id
                ),
                workflow=None,
                chain=chain,
                replayed_from=replayed_from if isinstance(replayed_from, int) else None,
                replayed_from_ref=source.ref() if source else None,
            )

    def workers(self) -> list[WorkerInfo]:
        """Registered workers."""
        with self._lock:
            now = self._advance()
            return self._worker_infos(now)

    def schedules(self) -> list[ScheduleInfo]:
        """Periodic tasks."""
        with self._lock:
            self._advance()
            return self._schedule_infos()

    # ------------------------------------------------------------------ writes

    def _get(self, result_id: int) -> _Run:
        run = self._runs.get(result_id)
        if run is None:
            raise TaskNotFound(f"no task run with result_id {result_id}")
        return run

    def _active_twin(self, run: _Run) -> _Run | None:
        """The READY or RUNNING row with the same spec (maybe ``run`` itself)."""
        wanted = run.spec_hash
        for other in self._runs.values():
            if other.status in (_S.READY, _S.RUNNING) and other.spec_hash == wanted:
                return other
        return None

    def _retry(self, result_id: int) -> RetryResult:
        run = self._get(result_id)
        if run.status is not _S.FAILED:
            raise ActionNotAllowed(
                f"task {result_id} is {run.status}: only FAILED tasks can be retried"
            )
        twin = self._active_twin(run)
        if twin is not None:
            raise AlreadyQueued(run.spec_hash, twin.result_id)
        run.status = _S.READY
        run.attempts = 0
        run.run_after = run.finished_at = run.failed_at = None
        revived = []
        for other in self._runs.values():
            if other.parent_id == result_id and other.status is _S.FAILED:
                other.status = _S.WAITING
                revived.append(other.result_id)
        return RetryResult(result_id=result_id, revived=tuple(sorted(revived)))

    def _cancel(self, result_id: int) -> CancelResult:
        run = self._get(result_id)
        if run.status is _S.RUNNING:
            run.cancel_requested = True
            return CancelResult(result_id=result_id, status=CancelOutcome.CANCEL_REQUESTED)
        if run.status not in (_S.READY, _S.WAITING):
            raise ActionNotAllowed(
                f"task {result_id} is {run.status}: only READY, WAITING or RUNNING tasks "
                "can be cancelled"
            )
        now = self._clock.now()
        cancelled = []
        todo = [run]
        while todo:
            current = todo.pop()
            current.status = _S.CANCELLED
            current.finished_at = now
            current.last_error = "cancelled by an operator"
            cancelled.append(current.result_id)
            todo.extend(
                r
                for r in self._runs.values()
                if r.parent_id == current.result_id and r.status is _S.WAITING
            )
        others = tuple(sorted(i for i in cancelled if i != result_id))
        return CancelResult(
            result_id=result_id, status=CancelOutcome.CANCELLED, also_cancelled=others
        )

    def retry(self, result_id: int) -> RetryResult:
        """Put a FAILED run back to READY."""
        with self._lock:
            return self._retry(result_id)

    def replay(self, result_id: int) -> ReplayResult:
        """Enqueue a new run from the spec of ``result_id``."""
        with self._lock:
            source = self._get(result_id)
            twin = self._active_twin(source)
            if twin is not None:
                raise AlreadyQueued(source.spec_hash, twin.result_id)
            new = replace(
                source,
                result_id=self._new_id(),
                status=_S.READY,
                enqueued_at=self._clock.now(),
                run_after=None,
                started_at=None,
                finished_at=None,
                failed_at=None,
                attempts=0,
                leased_by=None,
                leased_until=None,
                worker_ids=[],
                errors=[],
                last_error=None,
                return_value=None,
                cancel_requested=False,
                parent_id=None,
                workflow_id=None,
                metadata={**source.metadata, "replayed_from": source.result_id},
                logs_uri=None,
            )
            self._runs[new.result_id] = new
            return ReplayResult(new_id=new.result_id, source_id=source.result_id)

    def cancel(self, result_id: int) -> CancelResult:
        """Cancel a run (a RUNNING one gets a cancel request)."""
        with self._lock:
            return self._cancel(result_id)

    def bulk_retry(self, ids: Sequence[int]) -> BulkResult:
        """Retry many runs, skipping the ones that cannot be retried."""
        done: list[int] = []
        skipped: dict[int, str] = {}
        with self._lock:
            for result_id in dict.fromkeys(ids):
                try:
                    self._retry(result_id)
                except TaskNotFound:
                    skipped[result_id] = SKIP_NOT_FOUND
                except ActionNotAllowed:
                    skipped[result_id] = SKIP_NOT_FAILED
                except AlreadyQueued:
                    skipped[result_id] = SKIP_DUPLICATE
                else:
                    done.append(result_id)
        return BulkResult(done=done, skipped=skipped)

    def bulk_cancel(self, ids: Sequence[int]) -> BulkResult:
        """Cancel many runs, skipping finished ones."""
        done: list[int] = []
        skipped: dict[int, str] = {}
        cascaded: set[int] = set()
        with self._lock:
            for result_id in dict.fromkeys(ids):
                if result_id in cascaded:
                    done.append(result_id)
                    continue
                try:
                    outcome = self._cancel(result_id)
                except TaskNotFound:
                    skipped[result_id] = SKIP_NOT_FOUND
                except ActionNotAllowed:
                    skipped[result_id] = SKIP_FINISHED
                else:
                    done.append(result_id)
                    cascaded.update(outcome.also_cancelled)
        return BulkResult(done=done, skipped=skipped)

    def pause_queue(self, queue: str, reason: str | None) -> QueueState:
        """Stop the simulated workers claiming from ``queue``."""
        with self._lock:
            if queue not in self._paused:
                self._paused[queue] = (self._clock.now(), reason)
            at, why = self._paused[queue]
            return QueueState(queue=queue, paused=True, paused_at=at, reason=why)

    def resume_queue(self, queue: str) -> QueueState:
        """Let the simulated workers claim from ``queue`` again."""
        with self._lock:
            self._paused.pop(queue, None)
            return QueueState(queue=queue, paused=False, paused_at=None, reason=None)

    def _schedule(self, name: str) -> _Schedule:
        for s in self._schedules:
            if s.name == name:
                return s
        raise NotFound(f"no schedule named {name!r}")

    def run_schedule_now(self, name: str) -> int:
        """Enqueue one run of a schedule now."""
        with self._lock:
            s = self._schedule(name)
            run = self._add(s.task_path, s.queue, _S.READY, self._clock.now())
            run.metadata = {"periodic_name": name, "manual_run": True}
            return run.result_id

    def set_schedule_enabled(self, name: str, enabled: bool) -> ScheduleState:
        """Enable or disable a schedule."""
        with self._lock:
            s = self._schedule(name)
            s.enabled = enabled
            return ScheduleState(name=name, enabled=enabled)

    def listen(self) -> Listener | None:
        """The demo has no notifications: the app polls it."""
        return None

    def close(self) -> None:
        """Nothing to release."""
