"""The Python API for producers: a client bound to a DSN that enqueues tasks."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from reproq.db import Conn, connect, redact_dsn, resolve_dsn
from reproq.errors import DatabaseError
from reproq.producer.bulk import insert_rows
from reproq.producer.enqueue import insert_task
from reproq.producer.signature import Signature
from reproq.producer.template import staged_rows
from reproq.producer.workflow import WorkflowIds, enqueue_chain, enqueue_chord, enqueue_group
from reproq.spec import DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_SECONDS


class Client:
    """Enqueues task runs into the database at ``dsn`` (default: ``$REPROQ_DSN``, else
    ``$DATABASE_URL``, as :func:`reproq.db.resolve_dsn` finds it).

    Thread-safe; holds a small connection pool. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, dsn: str | None = None, *, max_connections: int = 4) -> None:
        self.dsn = resolve_dsn(dsn)
        self._pool = ConnectionPool(
            self.dsn,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=False,
            name="reproq-client",
        )
        self._opened = False
        self._open_lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[Conn]:
        """A pooled autocommit connection."""
        with self._open_lock:
            if not self._opened:
                # A direct connection first: on a dead database the pool would only say
                # that it timed out, while libpq says why (refused, auth, unknown db).
                connect(self.dsn, application_name="reproq-client").close()
                try:
                    self._pool.open(wait=True, timeout=10)
                except PoolTimeout as exc:
                    raise DatabaseError(f"cannot connect to {redact_dsn(self.dsn)}: {exc}") from exc
                self._opened = True
        with self._pool.connection() as conn:
            yield conn  # type: ignore[misc]  # rows are dicts: the pool sets dict_row

    def enqueue(
        self,
        task_path: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str = "default",
        priority: int = 0,
        run_after: dt.datetime | dt.timedelta | float | None = None,
        lock_key: str | None = None,
        concurrency_key: str | None = None,
        concurrency_limit: int = 0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
        expires_in: dt.timedelta | float | None = None,
        metadata: Mapping[str, Any] | None = None,
        dedup: bool = True,
    ) -> int:
        """Enqueue one task run; returns its result_id.

        An identical spec already READY or RUNNING returns that row's id (``dedup=True``)
        or raises :class:`~reproq.errors.AlreadyQueued` (``dedup=False``).
        """
        sig = Signature(
            task_path=task_path,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            queue=queue,
            priority=priority,
            run_after=run_after,
            lock_key=lock_key,
            concurrency_key=concurrency_key,
            concurrency_limit=concurrency_limit,
            max_attempts=max_attempts,
            timeout_seconds=timeout_seconds,
            expires_in=expires_in,
            metadata=dict(metadata or {}),
        )
        return self.enqueue_signature(sig, dedup=dedup)

    def enqueue_signature(self, sig: Signature, *, dedup: bool = True) -> int:
        """Enqueue a prepared :class:`Signature`."""
        row = sig.to_new_task()
        with self.connection() as conn:
            return insert_task(conn, row, dedup=dedup)

    def enqueue_many(self, sigs: Sequence[Signature], *, dedup: bool = True) -> list[int]:
        """Enqueue many runs in one transaction and few round trips; ids in input order.

        Each run is the row :meth:`enqueue_signature` would write, deduplicated the same
        way; an identical spec twice in ``sigs`` is one run. A signature that cannot be
        enqueued raises its error (the first such, in input order) and nothing is written.
        """
        # Lazy: rows are built batch by batch, each sent before the next is built.
        rows = staged_rows(sigs, now=dt.datetime.now(dt.UTC))
        with self.connection() as conn:
            return insert_rows(conn, rows, dedup=dedup, count=len(sigs))

    def chain(self, steps: Sequence[Signature]) -> WorkflowIds:
        """Enqueue steps that run one after another."""
        with self.connection() as conn:
            return enqueue_chain(conn, steps)

    def group(self, members: Sequence[Signature]) -> WorkflowIds:
        """Enqueue members that run in parallel, tracked as one workflow."""
        with self.connection() as conn:
            return enqueue_group(conn, members)

    def chord(self, members: Sequence[Signature], callback: Signature) -> WorkflowIds:
        """Enqueue members in parallel and a callback that runs when all succeeded."""
        with self.connection() as conn:
            return enqueue_chord(conn, members, callback)

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_default: Client | None = None
_default_lock = threading.Lock()


def configure(dsn: str | None = None) -> Client:
    """Set the process-wide client used by ``@task`` functions' ``.enqueue()``."""
    global _default  # noqa: PLW0603 - one process-wide default client, by design
    with _default_lock:
        if _default is not None:
            _default.close()
        _default = Client(dsn)
        return _default


def default_client() -> Client:
    """The process-wide client: the one :func:`configure` set, else one created from the
    environment (:func:`reproq.db.resolve_dsn`) on first use."""
    global _default  # noqa: PLW0603 - one process-wide default client, by design
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default
