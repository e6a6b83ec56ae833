"""The data source seam of the TUI: everything it reads and every change it makes.

Screens talk to a :class:`DataSource` and never to a database. :class:`PostgresSource`
is the real one: each method is one call into :mod:`reproq.ops.observe` (reads) or
:mod:`reproq.ops.admin` (writes), the same functions the CLI uses, over one connection.
The demo source (:mod:`reproq.tui.demo_source`) generates data in memory for ``--demo`` and
for deterministic snapshots.

Every method blocks, so the app only calls them from worker threads.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import unquote, urlparse

import psycopg
from psycopg.conninfo import conninfo_to_dict

from reproq.db import Conn, connect, redact_dsn, translate_errors
from reproq.errors import DatabaseError
from reproq.ops import admin, observe
from reproq.ops.admin import (
    BulkResult,
    CancelResult,
    QueueState,
    ReplayResult,
    RetryResult,
    ScheduleState,
)
from reproq.ops.change_feed import ChangeFeed
from reproq.ops.observe import (
    FailingTask,
    QueueInfo,
    ScheduleInfo,
    StatusSummary,
    TaskDetail,
    TaskFilter,
    TaskOrder,
    TaskRow,
    ThroughputBucket,
    WorkerInfo,
)
from reproq.tui.live import Listener

__all__ = [
    "ActionJob",
    "DataSource",
    "OverviewData",
    "PostgresSource",
    "SourceUnavailable",
    "read_log_tail",
]

T = TypeVar("T")

LOG_TAIL_BYTES = 16_384
"""How much of the end of a task's log file the detail screen shows."""


class SourceUnavailable(DatabaseError):
    """The database cannot be reached right now; the TUI shows "down" and retries."""


@dataclass(frozen=True, kw_only=True, slots=True)
class OverviewData:
    """Everything the Overview screen shows, read in one go."""

    summary: StatusSummary
    throughput: tuple[ThroughputBucket, ...]
    failing: tuple[FailingTask, ...]
    window: dt.timedelta
    beat_leader: str | None
    """Who holds the beat leadership lock (application name or pid), None if nobody."""
    next_schedule: ScheduleInfo | None
    """The enabled schedule that fires next."""
    schedules_enabled: int


class DataSource(Protocol):
    """What the TUI reads and changes. Methods block; call them from worker threads.

    Reads raise :class:`SourceUnavailable` when the database cannot be reached; writes
    raise the :mod:`reproq.ops.admin` errors (``ActionNotAllowed``, ``AlreadyQueued``,
    ``TaskNotFound``, ``NotFound``) unchanged so the app can show them.
    """

    @property
    def label(self) -> str:
        """Where the data comes from, for the screen (no password)."""
        ...

    def overview(self, *, window: dt.timedelta) -> OverviewData:
        """Counts, throughput, failing tasks, workers, beat."""
        ...

    def queues(self) -> list[QueueInfo]:
        """Every known queue."""
        ...

    def tasks(self, flt: TaskFilter, *, order: TaskOrder, limit: int) -> list[TaskRow]:
        """Task runs matching ``flt``."""
        ...

    def task(self, result_id: int) -> TaskDetail:
        """One task run in full."""
        ...

    def workers(self) -> list[WorkerInfo]:
        """Registered workers."""
        ...

    def schedules(self) -> list[ScheduleInfo]:
        """Periodic tasks."""
        ...

    def retry(self, result_id: int) -> RetryResult:
        """Put a FAILED run back to READY."""
        ...

    def replay(self, result_id: int) -> ReplayResult:
        """Enqueue a new run from the spec of ``result_id``."""
        ...

    def cancel(self, result_id: int) -> CancelResult:
        """Cancel a run (a RUNNING one gets a cancel request)."""
        ...

    def bulk_retry(self, ids: Sequence[int]) -> BulkResult:
        """Retry many runs, skipping the ones that cannot be retried."""
        ...

    def bulk_cancel(self, ids: Sequence[int]) -> BulkResult:
        """Cancel many runs, skipping finished ones."""
        ...

    def pause_queue(self, queue: str, reason: str | None) -> QueueState:
        """Stop workers claiming from ``queue``."""
        ...

    def resume_queue(self, queue: str) -> QueueState:
        """Let workers claim from ``queue`` again."""
        ...

    def run_schedule_now(self, name: str) -> int:
        """Enqueue one run of a schedule now; its result_id."""
        ...

    def set_schedule_enabled(self, name: str, enabled: bool) -> ScheduleState:
        """Enable or disable a schedule."""
        ...

    def listen(self) -> Listener | None:
        """A new change listener, or None when this source has no notifications."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


ActionJob = Callable[["DataSource", str], str]
"""An operator action: runs against a source with the text typed into its confirmation
(``""`` when none was asked) and returns the line to show when it worked."""


class PostgresSource:
    """The real source: :mod:`reproq.ops.observe` and :mod:`reproq.ops.admin` over one connection.

    Calls are serialised on the connection (a refresh and an action never interleave
    their statements). A lost connection is dropped and reopened on the next call, so
    the app recovers by simply calling again.
    """

    def __init__(
        self,
        dsn: str,
        *,
        notifications: bool = True,
        application_name: str = "reproq-tui",
    ) -> None:
        self.dsn = dsn
        self.notifications = notifications
        self.application_name = application_name
        self._conn: Conn | None = None
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        """``user@host:port/dbname`` (never the password)."""
        try:
            params = conninfo_to_dict(self.dsn)
        except psycopg.ProgrammingError:
            return redact_dsn(self.dsn)
        where = str(params.get("host") or "localhost")
        if params.get("port"):
            where += f":{params['port']}"
        user = f"{params['user']}@" if params.get("user") else ""
        return f"{user}{where}/{params.get('dbname') or ''}"

    def _call(self, fn: Callable[[Conn], T]) -> T:
        with self._lock:
            conn = self._conn
            if conn is None or conn.closed:
                try:
                    conn = connect(self.dsn, application_name=self.application_name)
                except DatabaseError as exc:
                    raise SourceUnavailable(str(exc)) from exc
                self._conn = conn
            try:
                with translate_errors():
                    return fn(conn)
            except DatabaseError as exc:
                if conn.closed or conn.broken:
                    self._drop()
                    raise SourceUnavailable(f"lost the database connection: {exc}") from exc
                raise

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def check(self) -> None:
        """Connect and read once: raises if the database or its schema is not usable."""
        self._call(observe.list_limits)

    def overview(self, *, window: dt.timedelta) -> OverviewData:
        """Counts, throughput, failing tasks, workers, beat."""

        def read(conn: Conn) -> OverviewData:
            summary = observe.status_summary(conn, window=window)
            buckets = observe.throughput(conn, window, buckets=30)
            failing = observe.top_failing(conn, window, limit=5)
            schedules = observe.list_schedules(conn)
            beat = observe.beat_status(conn)
            return OverviewData(
                summary=summary,
                throughput=tuple(buckets),
                failing=tuple(failing),
                window=window,
                beat_leader=(
                    (beat.leader_application or f"pid {beat.leader_pid}")
                    if beat.leader_pid is not None
                    else None
                ),
                next_schedule=next_schedule(schedules),
                schedules_enabled=sum(1 for s in schedules if s.enabled),
            )

        return self._call(read)

    def queues(self) -> list[QueueInfo]:
        """Every known queue."""
        return self._call(observe.list_queues)

    def tasks(self, flt: TaskFilter, *, order: TaskOrder, limit: int) -> list[TaskRow]:
        """Task runs matching ``flt``."""
        return self._call(lambda conn: observe.list_tasks(conn, flt, limit=limit, order=order))

    def task(self, result_id: int) -> TaskDetail:
        """One task run in full."""
        return self._call(lambda conn: observe.get_task(conn, result_id))

    def workers(self) -> list[WorkerInfo]:
        """Registered workers."""
        return self._call(observe.list_workers)

    def schedules(self) -> list[ScheduleInfo]:
        """Periodic tasks."""
        return self._call(observe.list_schedules)

    def retry(self, result_id: int) -> RetryResult:
        """Put a FAILED run back to READY."""
        return self._call(lambda conn: admin.retry(conn, result_id))

    def replay(self, result_id: int) -> ReplayResult:
        """Enqueue a new run from the spec of ``result_id``."""
        return self._call(lambda conn: admin.replay(conn, result_id=result_id))

    def cancel(self, result_id: int) -> CancelResult:
        """Cancel a run (a RUNNING one gets a cancel request)."""
        return self._call(lambda conn: admin.cancel(conn, result_id))

    def bulk_retry(self, ids: Sequence[int]) -> BulkResult:
        """Retry many runs, skipping the ones that cannot be retried."""
        return self._call(lambda conn: admin.bulk_retry(conn, ids))

    def bulk_cancel(self, ids: Sequence[int]) -> BulkResult:
        """Cancel many runs, skipping finished ones."""
        return self._call(lambda conn: admin.bulk_cancel(conn, ids))

    def pause_queue(self, queue: str, reason: str | None) -> QueueState:
        """Stop workers claiming from ``queue``."""
        return self._call(lambda conn: admin.pause_queue(conn, queue, reason))

    def resume_queue(self, queue: str) -> QueueState:
        """Let workers claim from ``queue`` again."""
        return self._call(lambda conn: admin.resume_queue(conn, queue))

    def run_schedule_now(self, name: str) -> int:
        """Enqueue one run of a schedule now; its result_id."""
        return self._call(lambda conn: admin.run_schedule_now(conn, name))

    def set_schedule_enabled(self, name: str, enabled: bool) -> ScheduleState:
        """Enable or disable a schedule."""
        return self._call(lambda conn: admin.set_schedule_enabled(conn, name, enabled))

    def listen(self) -> Listener | None:
        """A LISTEN connection of its own (None when notifications are turned off)."""
        if not self.notifications:
            return None
        try:
            return _FeedListener(
                ChangeFeed(self.dsn, application_name=f"{self.application_name}-listen")
            )
        except DatabaseError as exc:
            raise SourceUnavailable(str(exc)) from exc

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._drop()


class _FeedListener:
    """A :class:`ChangeFeed` seen as a :class:`Listener`."""

    def __init__(self, feed: ChangeFeed) -> None:
        self._feed = feed

    def wait(self, timeout: float) -> list[str]:
        return self._feed.wait(timeout)

    def close(self) -> None:
        self._feed.close()


def next_schedule(schedules: Iterable[ScheduleInfo]) -> ScheduleInfo | None:
    """The enabled schedule with the earliest next run, if any."""
    enabled = [s for s in schedules if s.enabled]
    return min(enabled, key=lambda s: (s.next_run_at, s.name)) if enabled else None


def read_log_tail(uri: str | None, max_bytes: int = LOG_TAIL_BYTES) -> str | None:
    """The last ``max_bytes`` of a task's log when ``uri`` is a readable local file.

    Other URIs (object storage, HTTP) are shown as links only: None.
    """
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif parsed.scheme == "" or (len(parsed.scheme) == 1 and uri[1:3] in (":\\", ":/")):
        path = Path(uri)
    else:
        return None
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    if len(data) >= max_bytes:
        # Drop the partial first line of the window.
        text = text.partition("\n")[2]
    return text
