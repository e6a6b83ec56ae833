"""The simulated fleet behind ``reproq tui --demo``: generated task runs, workers and
schedules in memory, and the steps that move them as the clock moves.

With a fixed seed and a fake clock the data is the same on every run.
"""

from __future__ import annotations

import datetime as dt
import random
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

from reproq.clock import Clock
from reproq.models import TaskStatus
from reproq.ops.observe import AttemptError, TaskRef, TaskRow
from reproq.spec import build_spec, spec_hash

__all__ = ["DemoFleet", "DemoRun", "DemoSchedule", "DemoWorker"]


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
class DemoRun:
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
        """The spec a real row of this task would carry."""
        return build_spec(self.task_path, self.args, self.kwargs, queue_name=self.queue)

    @property
    def spec_hash(self) -> str:
        """The hash of :attr:`spec`."""
        return spec_hash(self.spec)

    def row(self) -> TaskRow:
        """The listing view of this run."""
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
        """A pointer to this run, for lineage."""
        return TaskRef(
            result_id=self.result_id,
            status=self.status,
            task_path=self.task_path,
            queue_name=self.queue,
        )


@dataclass(kw_only=True, slots=True)
class DemoWorker:
    """A simulated worker process."""

    worker_id: str
    hostname: str
    queues: tuple[str, ...]
    concurrency: int
    started_at: dt.datetime
    last_seen_at: dt.datetime


@dataclass(kw_only=True, slots=True)
class DemoSchedule:
    """A simulated periodic task."""

    name: str
    cron: str
    timezone: str
    task_path: str
    queue: str
    every: dt.timedelta
    next_run_at: dt.datetime
    last_run_at: dt.datetime | None
    enabled: bool = True


class DemoFleet:
    """The simulated queue: task runs, workers, schedules and paused queues in memory.

    Not thread-safe: :class:`~reproq.tui.demo_source.DemoSource` serialises calls.
    """

    def __init__(self, clock: Clock, *, seed: int = 7) -> None:
        self._clock = clock
        self._rng = random.Random(seed)
        self.runs: dict[int, DemoRun] = {}
        self._next_id = 1000
        self.paused: dict[str, tuple[dt.datetime, str | None]] = {}
        now = clock.now()
        self._sim_time = now
        self.workers = [
            DemoWorker(
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
        self.workers.append(
            DemoWorker(
                worker_id="batch-0:4411",
                hostname="batch-0",
                queues=("billing",),
                concurrency=4,
                started_at=now - dt.timedelta(days=2),
                last_seen_at=now - dt.timedelta(minutes=42),
            )
        )
        self.schedules = [
            DemoSchedule(
                name="nightly-report",
                cron="0 2 * * *",
                timezone="Europe/Berlin",
                task_path="reports.build_daily",
                queue="reports",
                every=dt.timedelta(days=1),
                next_run_at=now + dt.timedelta(hours=3, minutes=12),
                last_run_at=now - dt.timedelta(hours=20, minutes=48),
            ),
            DemoSchedule(
                name="digest-emails",
                cron="*/15 * * * *",
                timezone="UTC",
                task_path="emails.send_digest",
                queue="emails",
                every=dt.timedelta(minutes=15),
                next_run_at=now + dt.timedelta(minutes=6),
                last_run_at=now - dt.timedelta(minutes=9),
            ),
            DemoSchedule(
                name="reindex-search",
                cron="30 * * * *",
                timezone="UTC",
                task_path="search.reindex_document",
                queue="default",
                every=dt.timedelta(hours=1),
                next_run_at=now + dt.timedelta(minutes=27),
                last_run_at=now - dt.timedelta(minutes=33),
            ),
            DemoSchedule(
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
        self.paused["reports"] = (now - dt.timedelta(minutes=25), "month-end freeze")
        self._seed_history(now)

    # ------------------------------------------------------------------ generation

    def new_id(self) -> int:
        """The next result id."""
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

    def add(self, task_path: str, queue: str, status: TaskStatus, at: dt.datetime) -> DemoRun:
        """A new run of ``task_path`` with generated arguments, enqueued ``at``."""
        args, kwargs = self._args_for(task_path)
        run = DemoRun(
            result_id=self.new_id(),
            task_path=task_path,
            queue=queue,
            args=args,
            kwargs=kwargs,
            status=status,
            enqueued_at=at,
            priority=self._rng.choice([0, 0, 0, 5, 10]),
        )
        self.runs[run.result_id] = run
        return run

    def _fail_attempt(self, run: DemoRun, at: dt.datetime, worker: str) -> None:
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
            worker = self.workers[rng.randrange(4)].worker_id
            run = self.add(task_path, queue, _S.SUCCESSFUL, at - dt.timedelta(seconds=30))
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
        head = self.add("billing.charge_card", "billing", _S.FAILED, now - dt.timedelta(minutes=7))
        head.attempts = head.max_attempts
        head.worker_ids = ["batch-1:918"]
        head.started_at = now - dt.timedelta(minutes=6)
        head.finished_at = head.failed_at = now - dt.timedelta(minutes=4)
        self._fail_attempt(head, now - dt.timedelta(minutes=4), "batch-1:918")
        head.workflow_id = uuid.UUID(int=rng.getrandbits(128))
        child = self.add("billing.send_invoice", "billing", _S.WAITING, head.enqueued_at)
        child.parent_id = head.result_id
        child.workflow_id = head.workflow_id
        # Work in progress and waiting to run.
        for _ in range(9):
            task_path, queue, _p = self._pick_task()
            self.add(task_path, queue, _S.READY, now - dt.timedelta(seconds=rng.randrange(2, 400)))
        for _ in range(4):
            run = self.add(
                "reports.build_daily",
                "reports",
                _S.READY,
                now - dt.timedelta(minutes=rng.randrange(1, 25)),
            )
        for _ in range(3):
            task_path, queue, _p = self._pick_task()
            run = self.add(task_path, queue, _S.READY, now - dt.timedelta(seconds=30))
            run.run_after = now + dt.timedelta(minutes=rng.randrange(2, 50))
        for _ in range(6):
            task_path, queue, _p = self._pick_task()
            self._start(
                self.add(
                    task_path, queue, _S.READY, now - dt.timedelta(seconds=rng.randrange(5, 90))
                ),
                now,
            )

    # ------------------------------------------------------------------ simulation

    def _worker_for(self, queue: str) -> DemoWorker | None:
        alive = [w for w in self.workers[:4] if queue in w.queues]
        if not alive:
            return None
        load = {w.worker_id: 0 for w in alive}
        for run in self.runs.values():
            if run.status is _S.RUNNING and run.leased_by in load:
                load[run.leased_by] += 1
        free = [w for w in alive if load[w.worker_id] < w.concurrency]
        return free[self._rng.randrange(len(free))] if free else None

    def _start(self, run: DemoRun, now: dt.datetime) -> bool:
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
        for run in list(self.runs.values()):
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
                for waiting in self.runs.values():
                    if waiting.parent_id == run.result_id and waiting.status is _S.WAITING:
                        waiting.status = _S.READY
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            task_path, queue, _p = self._pick_task()
            self.add(task_path, queue, _S.READY, now)
        due = sorted(
            (
                r
                for r in self.runs.values()
                if r.status is _S.READY
                and r.queue not in self.paused
                and (r.run_after is None or r.run_after <= now)
            ),
            key=lambda r: (-r.priority, r.enqueued_at),
        )
        for run in due:
            self._start(run, now)
        for alive in self.workers[:4]:
            alive.last_seen_at = now - dt.timedelta(seconds=rng.randrange(0, 5))
        finished = sorted(
            (r for r in self.runs.values() if r.status is _S.SUCCESSFUL),
            key=lambda r: r.result_id,
        )
        for run in finished[: max(0, len(finished) - _KEEP_FINISHED)]:
            del self.runs[run.result_id]

    def advance(self) -> dt.datetime:
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
