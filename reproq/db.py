"""Connections: DSN resolution and turning driver failures into clear errors."""

from __future__ import annotations

import os
import re
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import psycopg
from psycopg.rows import dict_row

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


def resolve_dsn(explicit: str | None) -> str:
    """The DSN to use: the explicit one, else ``$DATABASE_URL``; a clear error if neither."""
    dsn = explicit or os.environ.get("DATABASE_URL")
    if not dsn:
        raise UsageError("no database given: pass --dsn or set DATABASE_URL (or use --config FILE)")
    return dsn


def connect(dsn: str, *, autocommit: bool = True, application_name: str = "reproq") -> Conn:
    """Open a dict-row connection, raising :class:`DatabaseError` with the reason on failure."""
    try:
        conn = psycopg.connect(
            dsn,
            autocommit=autocommit,
            row_factory=dict_row,
            application_name=application_name,
            connect_timeout=10,
        )
    except psycopg.Error as exc:
        reason = f"cannot connect to {dsn}: {first_line(str(exc))}"
        raise DatabaseError(redact_dsn(reason, dsn=dsn)) from exc
    with _opened_lock:
        _opened.add(conn)
    return conn


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
