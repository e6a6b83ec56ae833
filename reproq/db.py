"""Connections: the one DSN resolver, DSN redaction, connections that notice a dead or
frozen server, and driver failures turned into clear errors."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import socket
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import psycopg
from psycopg.abc import PQGen
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import Row, dict_row

from reproq.errors import DatabaseError, UsageError

Conn = psycopg.Connection[dict[str, Any]]
"""A connection whose rows are dicts keyed by column name."""

# Every connection connect() made, for the connections-in-use gauge; weak, so a dropped
# connection leaves by itself.
_opened: weakref.WeakSet[Conn] = weakref.WeakSet()
_opened_lock = threading.Lock()

# --------------------------------------------------------------------------- redaction

_HIDDEN = "***"

# Any scheme, so that other URLs with credentials in a log line are covered too. A URI
# ends where free text would end it: whitespace or a quote (libpq quotes URIs in errors).
_URI = re.compile(r"\b(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>[^\s\"'<>`]*)")
# libpq's keyword/value syntax: spaces may surround "=", a value is single-quoted (with
# backslash escapes, possibly unterminated in a broken string) or runs to the next
# whitespace (a backslash escapes the next character there too). libpq keywords are
# lower case, but a mistyped PASSWORD= still carries the password.
_KEYWORD_PASSWORD = re.compile(
    r"(?P<key>\b[A-Za-z_]*pass(?:word|wd))(?P<eq>\s*=\s*)"
    r"(?P<value>'(?:\\.|[^'\\])*(?:'|\\?$)|(?:\\.|[^\s\\])+\\?)",
    re.IGNORECASE | re.DOTALL,
)
_PASSWORD_KEY = re.compile(r"[A-Za-z_]*pass(?:word|wd)", re.IGNORECASE)
_POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})


def redact_dsn(text: str, *, dsn: str | None = None) -> str:
    """*text* with every password a DSN in it carries replaced by ``***``.

    *text* is a DSN in any form libpq accepts, or free text containing DSNs (an error
    message, a log line): URIs (``postgresql://`` or ``postgres://``, with or without a
    user, an empty user, percent-encoding, several hosts, ``?password=`` in the query)
    and keyword/value strings (``password=...``, ``password = '...'`` with escaped
    quotes, any letter case, ``sslpassword``). Everything but the password stays, so the
    result still says which server was meant.

    With *dsn* (the DSN an error message is about), the pieces of its password that libpq
    may quote as a host name are hidden too (a URI password with an unencoded ``@``).
    """
    if dsn is not None:
        for secret in _spilled_fragments(dsn):
            text = text.replace(secret, _HIDDEN)
    out: list[str] = []
    pos = 0
    for match in _URI.finditer(text):
        out.append(_redact_keywords(text[pos : match.start()]))
        out.append(_redact_uri(match.group("scheme"), match.group("rest")))
        pos = match.end()
    out.append(_redact_keywords(text[pos:]))
    return "".join(out)


def _redact_keywords(text: str) -> str:
    return _KEYWORD_PASSWORD.sub(lambda m: f"{m.group('key')}{m.group('eq')}{_HIDDEN}", text)


def _uri_parts(scheme: str, rest: str) -> tuple[int, str, str]:
    """(end of the user info in *rest* or -1, the part before the query, the query)."""
    head, mark, query = rest.partition("?")
    if scheme.lower() in _POSTGRES_SCHEMES:
        # libpq ends the user info at the first "@", but an unencoded "@" in a password
        # then spills the rest into the host: hide up to the last "@" to be safe.
        at = head.rfind("@")
    else:
        authority = re.split(r"[/#]", head, maxsplit=1)[0]
        at = authority.rfind("@")
    return at, head, mark + query


def _redact_uri(scheme: str, rest: str) -> str:
    at, head, query = _uri_parts(scheme, rest)
    if at >= 0:
        user, colon, _ = head[:at].partition(":")
        if colon:
            head = f"{user}:{_HIDDEN}{head[at:]}"
    if query:
        pairs = query[1:].split("&")
        for i, pair in enumerate(pairs):
            key, eq, _ = pair.partition("=")
            if eq and _PASSWORD_KEY.fullmatch(unquote(key)):
                pairs[i] = f"{key}={_HIDDEN}"
        query = "?" + "&".join(pairs)
    return f"{scheme}://{head}{query}"


def _spilled_fragments(dsn: str) -> list[str]:
    """Pieces of a URI password with an unencoded "@" that libpq reads as part of the host.

    libpq ends the user info at the first "@", so ``u:P@ss-word@host`` makes the host
    ``ss-word@host``, which its error message then quotes. Only such pieces are hidden
    literally: a password that also occurs elsewhere (``postgres`` as user and password)
    must not blank out the rest of the message.
    """
    pieces: set[str] = set()
    for match in _URI.finditer(dsn):
        at, head, _ = _uri_parts(match.group("scheme"), match.group("rest"))
        password = head[:at].partition(":")[2] if at >= 0 else ""
        if "@" in password:
            pieces.update(password.split("@")[1:])
    # Short pieces would blank out ordinary words of the message.
    return sorted((p for p in pieces if len(p) >= 4), key=len, reverse=True)


DSN_ENV_VARS = ("REPROQ_DSN", "DATABASE_URL")
"""Environment variables that name the database, strongest first (``DATABASE_URL`` is the
Go worker's and the seed's name). Empty variables count as unset."""


def dsn_from_env(env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """``(variable, DSN)`` of the first :data:`DSN_ENV_VARS` set in *env* (``os.environ``)."""
    environ = os.environ if env is None else env
    for name in DSN_ENV_VARS:
        value = environ.get(name)
        if value:
            return name, value
    return None


def resolve_dsn(explicit: str | None = None, *, env: Mapping[str, str] | None = None) -> str:
    """The DSN to use: *explicit*, else the environment's; a clear error if neither.

    The settings loader reads the environment through :func:`dsn_from_env` too, so every
    command, the producer client and the config file agree on which variable wins.
    """
    if explicit:
        return explicit
    found = dsn_from_env(env)
    if found is None:
        raise UsageError(
            "no database given: pass --dsn or set DATABASE_URL (or REPROQ_DSN, or use "
            "--config FILE)"
        )
    return found[1]


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
        reason = f"cannot connect to {dsn}: {first_line(str(exc))}{_scheme_hint(dsn)}"
        raise DatabaseError(redact_dsn(reason, dsn=dsn)) from exc
    if isinstance(conn, BoundedConnection) and answer_timeout is not None:
        conn.answer_timeout = answer_timeout
    with _opened_lock:
        _opened.add(conn)
    return conn


def _scheme_hint(dsn: str) -> str:
    """Why libpq could not read the URL of another database (``mysql://``, ``sqlite://``):
    its own message ("missing '=' after …") does not say."""
    match = re.match(r"\s*([A-Za-z][A-Za-z0-9+.-]*)://", dsn)
    if match is None or match.group(1).lower() in _POSTGRES_SCHEMES:
        return ""
    return f" ({match.group(1)}:// is not a PostgreSQL URL: use postgresql://… or key=value pairs)"


def open_connections() -> int:
    """Connections this process opened with :func:`connect` and has not closed yet."""
    with _opened_lock:
        return sum(1 for conn in list(_opened) if not conn.closed)


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
            f"{redact_dsn(first_line(str(exc)))} (run `reproq migrate` to create the schema)"
        ) from exc
    except psycopg.Error as exc:
        raise DatabaseError(redact_dsn(first_line(str(exc)))) from exc


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
