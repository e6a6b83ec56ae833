"""A link to the database: one connection, opened again when lost, with backoff after trouble.

A long-running loop (a worker lane, the beat) must outlive the database going away:
its statements fail, the connection is dropped when it is gone, and the loop tries again
after a backoff that doubles from :data:`BACKOFF_MIN` up to :data:`BACKOFF_MAX` seconds.
The first statement that succeeds again resets the backoff. The loop keeps its own
policy on what to log and what to keep running meanwhile; the link keeps the connection
and the timing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg

from reproq.db import Conn

__all__ = ["BACKOFF_MAX", "BACKOFF_MIN", "Link"]

BACKOFF_MIN = 0.2
"""Seconds before the first retry after trouble."""

BACKOFF_MAX = 5.0
"""The longest wait between retries while the trouble lasts."""


class Link:
    """A database connection made by ``connect``, reopened on demand after it was lost.

    A reconnect is logged to ``log`` as ``"<name> reconnected to the database"``. Use a
    link from one thread.
    """

    def __init__(self, connect: Callable[[], Conn], *, name: str, log: logging.Logger) -> None:
        self._connect = connect
        self.name = name
        self._log = log
        self.conn: Conn | None = None
        """The open connection, if there is one."""
        self.retry_at = 0.0
        """No database work before this :func:`time.monotonic` instant (after trouble)."""
        self.backoff = BACKOFF_MIN
        """The wait after the next trouble."""
        self.down_since: float | None = None
        """When the trouble that lasts until now began (monotonic), or None."""
        self._opened = False

    def get(self) -> Conn:
        """The connection, opened anew when there is none or it was lost.

        Raises whatever ``connect`` raises when the database cannot be reached.
        """
        conn = self.conn
        if conn is None or conn.closed or conn.broken:
            self.drop()
            conn = self._connect()
            self.conn = conn
            if self._opened:
                self._log.info("%s reconnected to the database", self.name)
            self._opened = True
        return conn

    def trouble(self, exc: BaseException) -> float:
        """Note that database work failed with ``exc``; the seconds until the next try.

        The connection is dropped when it is gone (or the error says the connection
        failed), so the next :meth:`get` opens a new one.
        """
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
        conn = self.conn
        if conn is not None and (
            conn.broken or conn.closed or isinstance(exc, psycopg.OperationalError)
        ):
            self.drop()
        delay = self.backoff
        self.retry_at = now + delay
        self.backoff = min(delay * 2, BACKOFF_MAX)
        return delay

    def ok(self) -> None:
        """Note that database work succeeded: the trouble, if any, is over."""
        self.backoff = BACKOFF_MIN
        self.down_since = None

    def transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a connection-level problem (try again later) rather than a
        statement the server refuses."""
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return True
        conn = self.conn
        return conn is None or conn.closed or conn.broken

    def drop(self) -> None:
        """Close the connection (if any); the next :meth:`get` opens a new one."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
