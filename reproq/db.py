"""Connections: DSN resolution, a link that notices a dead or frozen server, clear errors."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.abc import PQGen
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import Row, dict_row

from reproq.errors import DatabaseError, UsageError

Conn = psycopg.Connection[dict[str, Any]]
"""A connection whose rows are dicts keyed by column name."""

_PASSWORD_IN_URL = re.compile(r"(://[^:/@]+:)([^@]*)(@)")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)(\S+)", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``, safe to log or print."""
    return _PASSWORD_KV.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***\3", dsn))


def resolve_dsn(explicit: str | None) -> str:
    """The DSN to use: the explicit one, else ``$DATABASE_URL``; a clear error if neither."""
    dsn = explicit or os.environ.get("DATABASE_URL")
    if not dsn:
        raise UsageError("no database given: pass --dsn or set DATABASE_URL (or use --config FILE)")
    return dsn


def connect(
    dsn: str,
    *,
    autocommit: bool = True,
    application_name: str = "reproq",
    answer_timeout: float | None = None,
) -> Conn:
    """Open a dict-row connection, raising :class:`DatabaseError` with the reason on failure.

    Every connection gets TCP keepalives and ``tcp_user_timeout`` (see :data:`TCP_OPTIONS`).
    With ``answer_timeout``, any wait for the server longer than that many seconds drops
    the connection and fails with :class:`psycopg.OperationalError` (see
    :class:`BoundedConnection`); not for connections that wait on ``LISTEN``.
    """
    cls: type[psycopg.Connection[Any]] = (
        psycopg.Connection if answer_timeout is None else BoundedConnection
    )
    try:
        conn = cls.connect(
            dsn,
            autocommit=autocommit,
            row_factory=dict_row,
            application_name=application_name,
            connect_timeout=10,
            **_tcp_options(dsn),
        )
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to {redact_dsn(dsn)}: {first_line(str(exc))}") from exc
    if isinstance(conn, BoundedConnection) and answer_timeout is not None:
        conn.answer_timeout = answer_timeout
    return conn


@contextmanager
def connection(dsn: str, *, application_name: str = "reproq") -> Iterator[Conn]:
    """A short-lived autocommit connection, closed on exit; driver errors become DatabaseError."""
    conn = connect(dsn, application_name=application_name)
    try:
        with translate_errors():
            yield conn
    finally:
        conn.close()


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise psycopg errors as :class:`DatabaseError` with a one-line reason."""
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        from reproq.errors import SchemaError

        raise SchemaError(
            f"{first_line(str(exc))} (run `reproq migrate` to create the schema)"
        ) from exc
    except psycopg.Error as exc:
        raise DatabaseError(first_line(str(exc))) from exc


def first_line(text: str) -> str:
    """The first non-empty line of a message, for one-line error output."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return text.strip()


# -- liveness of the link ---------------------------------------------------------------

TCP_OPTIONS: dict[str, str] = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}
"""libpq settings of every connection unless its DSN sets them: a peer that is gone (a
network partition, a dead host) is noticed within about 30 s, idle or mid-statement,
rather than after the kernel's retransmissions (~15 min). They cannot notice a server
that is reachable but frozen, whose kernel keeps acknowledging: that takes
:class:`BoundedConnection`. Unix-socket connections ignore them."""

STATEMENT_ANSWER_GRACE = 5.0
"""How much longer than its ``statement_timeout`` a client waits for the server's answer
before it holds the server frozen: a live server ends every statement by then itself."""


def _tcp_options(dsn: str) -> dict[str, Any]:
    try:
        given = conninfo_to_dict(dsn)
    except psycopg.Error:
        return {}  # a malformed DSN fails at connect, with libpq's own message
    options = {key: value for key, value in TCP_OPTIONS.items() if key not in given}
    if psycopg.pq.version() < 120000:  # tcp_user_timeout came with libpq 12
        options.pop("tcp_user_timeout", None)
    return options


class BoundedConnection(psycopg.Connection[Row]):
    """A connection whose every wait for the server ends after :attr:`answer_timeout`.

    A server process that is stopped (SIGSTOP, a hung host, a VM paused) leaves the TCP
    connection open, and the kernel keeps acknowledging, so keepalives never fire and a
    statement waits forever. Here a watcher thread shuts the socket down once a wait has
    lasted :attr:`answer_timeout` seconds: the statement then fails with
    :class:`psycopg.OperationalError`, the connection is broken, and the caller reconnects
    (to a new server process). The server sees the client gone and rolls back whatever
    the statement had not committed.
    """

    answer_timeout: float = 30.0
    """Seconds a statement (or any other wait for the server) may take."""

    _severed = False

    def wait(self, gen: PQGen[Any], *args: Any, **kwargs: Any) -> Any:
        """Drive ``gen`` as psycopg does, but give up after :attr:`answer_timeout`."""
        token = _WATCH.arm(self, self.answer_timeout)
        try:
            return super().wait(gen, *args, **kwargs)
        except psycopg.Error as exc:
            if self._severed:
                raise psycopg.OperationalError(
                    f"the database did not answer within {self.answer_timeout:g}s "
                    "(frozen or unreachable); connection dropped"
                ) from exc
            raise
        finally:
            _WATCH.disarm(token)

    def sever(self) -> None:
        """Shut the socket down, so that whatever waits on it fails at once."""
        self._severed = True
        with (
            contextlib.suppress(OSError, psycopg.Error),
            socket.socket(fileno=os.dup(self.pgconn.socket)) as sock,
        ):
            sock.shutdown(socket.SHUT_RDWR)


class _AnswerWatch:
    """One thread per process that severs connections whose wait for an answer is too long.

    Arming and disarming cost a lock and a dict operation; the thread sleeps until the
    earliest deadline and is woken only when a new deadline comes sooner than that.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, BoundedConnection[Any]]] = {}
        self._tokens = itertools.count()
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def arm(self, conn: BoundedConnection[Any], seconds: float) -> int:
        """Watch ``conn`` for ``seconds``; returns the token for :meth:`disarm`."""
        deadline = time.monotonic() + seconds
        token = next(self._tokens)
        with self._cond:
            self._armed[token] = (deadline, conn)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="reproq-answer-watch", daemon=True
                )
                self._thread.start()
            elif deadline < self._wake_at:
                self._cond.notify()
        return token

    def disarm(self, token: int) -> None:
        """Stop watching (the wait ended)."""
        with self._cond:
            self._armed.pop(token, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token, (deadline, conn) in list(self._armed.items()):
                    if deadline <= now:
                        # Under the lock: the wait cannot end and close the socket meanwhile.
                        del self._armed[token]
                        conn.sever()
                self._wake_at = min((d for d, _ in self._armed.values()), default=math.inf)
                self._cond.wait(None if math.isinf(self._wake_at) else self._wake_at - now)


_WATCH = _AnswerWatch()
