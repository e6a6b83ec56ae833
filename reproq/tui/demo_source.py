"""The data source of ``reproq tui --demo``: a small, believable queue held in memory.

The demo behaves like the real thing: the same value types as :mod:`reproq.ops.observe`,
the same rules and errors as :mod:`reproq.ops.admin` (the functions of
:mod:`reproq.ops.admin_rules`: retry only FAILED, replay refused while an identical spec
is active, cancel cascades to waiting children). Time comes from the injected clock; as
it moves, the simulated fleet of :mod:`reproq.tui.demo_data` claims, finishes and
enqueues tasks. With a fixed seed and a fake clock the data is the same on every run.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import replace
from fnmatch import fnmatchcase

from reproq.clock import Clock
from reproq.errors import AlreadyQueued, NotFound, TaskNotFound
from reproq.models import TaskStatus
from reproq.ops.admin import (
    BulkResult,
    CancelOutcome,
    CancelResult,
    QueueState,
    ReplayResult,
    RetryResult,
    ScheduleState,
)
from reproq.ops.admin_rules import (
    ACTIVE_STATUSES,
    cancel_each,
    cancel_outcome,
    retry_each,
    retry_refusal,
)
from reproq.ops.observe import (
    DEFAULT_COUNT_CAP,
    ConcurrencyUse,
    FailingTask,
    QueueInfo,
    RateLimit,
    ScheduleInfo,
    StatusSummary,
    TaskDetail,
    TaskFilter,
    TaskOrder,
    TaskRow,
    ThroughputBucket,
    WorkerInfo,
)
from reproq.spec import spec_hash
from reproq.tui.demo_data import DemoFleet, DemoRun, DemoSchedule
from reproq.tui.live import Listener
from reproq.tui.source import OverviewData, next_schedule

__all__ = ["DemoSource"]

_S = TaskStatus


class DemoSource:
    """A :class:`~reproq.tui.source.DataSource` over generated, simulated data.

    Deterministic for a given ``seed`` and clock; thread-safe.
    """

    def __init__(self, clock: Clock, *, seed: int = 7) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._fleet = DemoFleet(clock, seed=seed)

    # ------------------------------------------------------------------ reads

    @property
    def label(self) -> str:
        """A demo has no database."""
        return "demo data (no database)"

    def _queue_infos(self, now: dt.datetime, window: dt.timedelta) -> list[QueueInfo]:
        names = sorted(
            {r.queue for r in self._fleet.runs.values()}
            | set(self._fleet.paused)
            | {q for w in self._fleet.workers for q in w.queues}
        )
        result = []
        since = now - window
        for name in names:
            runs = [r for r in self._fleet.runs.values() if r.queue == name]

            def count(status: TaskStatus, runs: list[DemoRun] = runs) -> int:
                return sum(1 for r in runs if r.status is status)

            ready = [r for r in runs if r.status is _S.READY]
            due = [r for r in ready if r.run_after is None or r.run_after <= now]
            oldest = min((r.enqueued_at for r in due), default=None)
            paused = self._fleet.paused.get(name)
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
        for run in self._fleet.runs.values():
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
            for w in sorted(self._fleet.workers, key=lambda w: w.worker_id)
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
            for s in sorted(self._fleet.schedules, key=lambda s: s.name)
        ]

    def overview(self, *, window: dt.timedelta) -> OverviewData:
        """Counts, throughput, failing tasks, workers, beat."""
        with self._lock:
            now = self._fleet.advance()
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
                    for r in self._fleet.runs.values()
                    if r.finished_at is not None and lo <= r.finished_at < hi
                ]
                tp.append(
                    ThroughputBucket(
                        start=lo,
                        succeeded=sum(1 for r in done if r.status is _S.SUCCESSFUL),
                        failed=sum(1 for r in done if r.status is _S.FAILED),
                    )
                )
            failing: dict[str, list[DemoRun]] = {}
            for r in self._fleet.runs.values():
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
            now = self._fleet.advance()
            return self._queue_infos(now, dt.timedelta(hours=1))

    def _matches(self, run: DemoRun, flt: TaskFilter, now: dt.datetime) -> bool:
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
            now = self._fleet.advance()
            runs = sorted(
                (r for r in self._fleet.runs.values() if self._matches(r, flt, now)),
                key=lambda r: r.result_id,
                reverse=order is TaskOrder.NEWEST,
            )
            return [r.row() for r in runs[:limit]]

    def task(self, result_id: int) -> TaskDetail:
        """One task run in full."""
        with self._lock:
            self._fleet.advance()
            run = self._get(result_id)
            spec = run.spec
            replayed_from = run.metadata.get("replayed_from")
            source = self._fleet.runs.get(replayed_from) if isinstance(replayed_from, int) else None
            parent = self._fleet.runs.get(run.parent_id) if run.parent_id else None
            chain = (
                tuple(
                    r.ref()
                    for r in sorted(self._fleet.runs.values(), key=lambda r: r.result_id)
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
                    r.ref() for r in self._fleet.runs.values() if r.parent_id == run.result_id
                ),
                workflow=None,
                chain=chain,
                replayed_from=replayed_from if isinstance(replayed_from, int) else None,
                replayed_from_ref=source.ref() if source else None,
            )

    def workers(self) -> list[WorkerInfo]:
        """Registered workers."""
        with self._lock:
            now = self._fleet.advance()
            return self._worker_infos(now)

    def schedules(self) -> list[ScheduleInfo]:
        """Periodic tasks."""
        with self._lock:
            self._fleet.advance()
            return self._schedule_infos()

    # ------------------------------------------------------------------ writes

    def _get(self, result_id: int) -> DemoRun:
        run = self._fleet.runs.get(result_id)
        if run is None:
            raise TaskNotFound(f"no task run with result_id {result_id}")
        return run

    def _active_twin(self, run: DemoRun) -> DemoRun | None:
        """The READY or RUNNING row with the same spec (maybe ``run`` itself)."""
        wanted = run.spec_hash
        for other in self._fleet.runs.values():
            if other.status in ACTIVE_STATUSES and other.spec_hash == wanted:
                return other
        return None

    def _retry(self, result_id: int) -> RetryResult:
        run = self._get(result_id)
        if run.status is not _S.FAILED:
            raise retry_refusal(result_id, run.status)
        twin = self._active_twin(run)
        if twin is not None:
            raise AlreadyQueued(run.spec_hash, twin.result_id)
        run.status = _S.READY
        run.attempts = 0
        run.run_after = run.finished_at = run.failed_at = None
        revived = []
        for other in self._fleet.runs.values():
            if other.parent_id == result_id and other.status is _S.FAILED:
                other.status = _S.WAITING
                revived.append(other.result_id)
        return RetryResult(result_id=result_id, revived=tuple(sorted(revived)))

    def _cancel(self, result_id: int) -> CancelResult:
        run = self._get(result_id)
        outcome = cancel_outcome(result_id, run.status)
        if outcome is CancelOutcome.CANCEL_REQUESTED:
            run.cancel_requested = True
            return CancelResult(result_id=result_id, status=outcome)
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
                for r in self._fleet.runs.values()
                if r.parent_id == current.result_id and r.status is _S.WAITING
            )
        others = tuple(sorted(i for i in cancelled if i != result_id))
        return CancelResult(result_id=result_id, status=outcome, also_cancelled=others)

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
                result_id=self._fleet.new_id(),
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
            self._fleet.runs[new.result_id] = new
            return ReplayResult(new_id=new.result_id, source_id=source.result_id)

    def cancel(self, result_id: int) -> CancelResult:
        """Cancel a run (a RUNNING one gets a cancel request)."""
        with self._lock:
            return self._cancel(result_id)

    def bulk_retry(self, ids: Sequence[int]) -> BulkResult:
        """Retry many runs, skipping the ones that cannot be retried."""
        with self._lock:
            return retry_each(ids, self._retry)

    def bulk_cancel(self, ids: Sequence[int]) -> BulkResult:
        """Cancel many runs, skipping finished ones."""
        with self._lock:
            return cancel_each(ids, self._cancel)

    def pause_queue(self, queue: str, reason: str | None) -> QueueState:
        """Stop the simulated workers claiming from ``queue``."""
        with self._lock:
            if queue not in self._fleet.paused:
                self._fleet.paused[queue] = (self._clock.now(), reason)
            at, why = self._fleet.paused[queue]
            return QueueState(queue=queue, paused=True, paused_at=at, reason=why)

    def resume_queue(self, queue: str) -> QueueState:
        """Let the simulated workers claim from ``queue`` again."""
        with self._lock:
            self._fleet.paused.pop(queue, None)
            return QueueState(queue=queue, paused=False, paused_at=None, reason=None)

    def _schedule(self, name: str) -> DemoSchedule:
        for s in self._fleet.schedules:
            if s.name == name:
                return s
        raise NotFound(f"no schedule named {name!r}")

    def run_schedule_now(self, name: str) -> int:
        """Enqueue one run of a schedule now."""
        with self._lock:
            s = self._schedule(name)
            run = self._fleet.add(s.task_path, s.queue, _S.READY, self._clock.now())
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
