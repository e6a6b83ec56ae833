"""Shared fixtures: one PostgreSQL server per test session, one fresh database per test.

The server comes from :func:`reproq.pg.throwaway.throwaway_server`: ``$REPROQ_TEST_DSN`` if
set, else Docker if a daemon answers, else a throwaway local cluster. Database names are
unique (a random suffix), so parallel workers (``pytest -n``) and runs sharing one
``REPROQ_TEST_DSN`` server never collide.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from reproq.db import Conn, connect
from reproq.pg.throwaway import (
    TEST_SETTINGS,
    ServerInfo,
    create_database,
    drop_database,
    dsn_with_dbname,
    throwaway_server,
)


def _unique_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[ServerInfo]:
    """The session's PostgreSQL server (fast, non-durable settings when created here)."""
    with throwaway_server(settings=TEST_SETTINGS) as info:
        yield info


@pytest.fixture(scope="session")
def _template_db(pg_server: ServerInfo) -> Iterator[str]:
    """Name of a migrated database that per-test databases are copied from."""
    # Imported here so modules that need no schema run even while migrations are broken.
    from reproq.pg.migrations import migrate

    name = _unique_name("reproq_tpl_")
    create_database(pg_server.dsn, name)
    try:
        migrate(dsn_with_dbname(pg_server.dsn, name))
        yield name
    finally:
        drop_database(pg_server.dsn, name)


@pytest.fixture
def dsn(pg_server: ServerInfo, _template_db: str) -> Iterator[str]:
    """DSN of a fresh, fully migrated database of this test's own."""
    name = _unique_name("reproq_test_")
    create_database(pg_server.dsn, name, template=_template_db)
    try:
        yield dsn_with_dbname(pg_server.dsn, name)
    finally:
        # Forced: a test that leaked a connection must not break the teardown.
        drop_database(pg_server.dsn, name)


@pytest.fixture
def empty_dsn(pg_server: ServerInfo) -> Iterator[str]:
    """DSN of a fresh database with no reproq schema at all (for migration tests)."""
    name = _unique_name("reproq_empty_")
    create_database(pg_server.dsn, name)
    try:
        yield dsn_with_dbname(pg_server.dsn, name)
    finally:
        drop_database(pg_server.dsn, name)


@pytest.fixture
def conn(dsn: str) -> Iterator[Conn]:
    """An autocommit dict-row connection to the test's database."""
    connection = connect(dsn)
    try:
        yield connection
    finally:
        connection.close()
