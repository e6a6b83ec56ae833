"""The execution ledger: every run of a torture task body, recorded by the body itself.

The harness creates the ``reproq_stress_ledger`` table and starts the workers with
:data:`LEDGER_DSN_ENV` set. A task body calls :func:`record_start` before it does
anything and :func:`record_finish` just before it returns, each over a connection of
its own (never the worker's), so the ledger tells what really ran, where and when —
independently of what the worker later reports to ``task_runs``.

Times are taken with ``clock_timestamp()`` on the database server: one clock for every
process, and the recorded span always lies inside the real one (the start is written
after the body began, the end before it returned), so overlaps the checker finds are
real overlaps.

Ledger writes ride out the faults the harness injects: a terminated connection or a
restarting server is retried for up to :data:`RETRY_SECONDS`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from reproq.db import Conn, translate_errors
from reproq.queries import q

__all__ = [
    "LEDGER_APP_NAME",
    "LEDGER_DSN_ENV",
    "RETRY_SECONDS",
    "LedgerUnavailable",
    "create_ledger",
    "record_finish",
    "record_start",
    "with_app_name",
]

LEDGER_DSN_ENV = "REPROQ_STRESS_LEDGER_DSN"
"""Environment variable through which worker processes learn where the ledger lives."""

LEDGER_APP_NAME = "reproq-stress-ledger"
"""application_name of ledger connections; connection faults spare ``reproq-stress*``."""

RETRY_SECONDS = 60.0
"""How long a ledger write keeps retrying through connection faults and restarts."""

logger = logging.getLogger("reproq.stress.ledger")


class LedgerUnavailable(RuntimeError):
    """The ledger could not be written within :data:`RETRY_SECONDS`."""


def with_app_name(dsn: str, application_name: str) -> str:
    """``dsn`` with its ``application_name`` set (a key/value DSN)."""
    params = conninfo_to_dict(dsn)
    params["application_name"] = application_name
    return make_conninfo("", **params)


def create_ledger(conn: Conn) -> None:
    """Create the ledger table (idempotent)."""
    with translate_errors():
        conn.execute(q("stress_create_ledger"))


class _Pool:
    """One small connection pool per process, made on first use (after any fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._pid = 0

    def get(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                dsn = os.environ.get(LEDGER_DSN_ENV)
                if not dsn:
                    raise LedgerUnavailable(
                        f"${LEDGER_DSN_ENV} is not set: torture tasks run only under "
                        "`reproq torture`"
                    )
                self._pool = ConnectionPool(
                    with_app_name(dsn, LEDGER_APP_NAME),
                    min_size=0,
                    max_size=4,
                    kwargs={"autocommit": True},
                    timeout=5.0,
                    open=True,
                    name="reproq-stress-ledger",
                )
                self._pid = os.getpid()
            return self._pool


_pool = _Pool()


def _write(action: Callable[[psycopg.Connection[Any]], None]) -> None:
    deadline = time.monotonic() + RETRY_SECONDS
    delay = 0.05
    while True:
        try:
            with _pool.get().connection() as conn:
                action(conn)
            return
        except (psycopg.Error, PoolTimeout) as exc:
            if time.monotonic() >= deadline:
                raise LedgerUnavailable(f"cannot write the ledger: {exc}") from exc
            logger.debug("ledger write failed (%s); retrying", exc)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def record_start(*, token: str, result_id: int, attempt: int, worker_id: str, kind: str) -> None:
    """Record that an execution began (idempotent per ``token``), with this process's pid
    and those of its parent and grandparent."""
    params = {
        "token": token,
        "result_id": result_id,
        "attempt": attempt,
        "worker_id": worker_id,
        "pid": os.getpid(),
        "ancestors": _ancestors(),
        "kind": kind,
    }

    def insert(conn: psycopg.Connection[Any]) -> None:
        conn.execute(q("stress_ledger_start"), params)

    _write(insert)


def _ancestors(depth: int = 2) -> list[int]:
    """This process's parent, grandparent… (``depth`` of them; fewer without ``/proc``).

    A task run by the ``subprocess`` executor is a child of its worker; one run by the
    ``process`` executor a grandchild (its parent is the fork server). The checker finds
    the worker among them, to tell when the body's worker died.
    """
    found: list[int] = []
    pid = os.getppid()
    while pid > 1 and len(found) < depth:
        found.append(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                stat = handle.read()
            pid = int(stat.rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return found


def record_finish(*, token: str, outcome: str) -> None:
    """Record how an execution ended: ``ok``, ``error`` or ``cancelled``."""
    params = {"token": token, "outcome": outcome}

    def update(conn: psycopg.Connection[Any]) -> None:
        conn.execute(q("stress_ledger_finish"), params)

    _write(update)
