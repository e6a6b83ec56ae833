"""Connections: the one DSN resolver and turning driver failures into clear errors."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from reproq.errors import DatabaseError, UsageError

Conn = psycopg.Connection[dict[str, Any]]
"""A connection whose rows are dicts keyed by column name."""

_PASSWORD_IN_URL = re.compile(r"(://[^:/@]+:)([^@]*)(@)")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)(\S+)", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``, safe to log or print."""
    return _PASSWORD_KV.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***\3", dsn))


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


def connect(dsn: str, *, autocommit: bool = True, application_name: str = "reproq") -> Conn:
    """Open a dict-row connection, raising :class:`DatabaseError` with the reason on failure."""
    try:
        return psycopg.connect(
            dsn,
            autocommit=autocommit,
            row_factory=dict_row,
            application_name=application_name,
            connect_timeout=10,
        )
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to {redact_dsn(dsn)}: {first_line(str(exc))}") from exc


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
