"""``reproq migrate``: versioned, idempotent schema migrations under an advisory lock.

Migrations are the files ``reproq/sql/migrations/NNNN_name.sql``, applied in order, each
in its own transaction, and recorded in ``reproq_schema_migrations``. The baseline is
written to upgrade a schema created by reproq-django or by older installs in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from reproq.db import Conn, connection, translate_errors
from reproq.errors import SchemaError
from reproq.queries import q

MIGRATE_LOCK_ID = 0x7265_7072_6F71_0001
"""Advisory lock serialising concurrent ``migrate`` runs ("reproq" in ASCII, then 1)."""

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Migration:
    """One schema migration file."""

    version: int
    name: str
    sql: str


@cache
def available_migrations() -> tuple[Migration, ...]:
    """Every migration shipped with the package, in version order."""
    folder = resources.files("reproq") / "sql" / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(
                Migration(
                    version=int(match.group(1)),
                    name=match.group(2),
                    sql=entry.read_text("utf-8"),
                )
            )
    found.sort(key=lambda m: m.version)
    return tuple(found)


def latest_version() -> int:
    """The newest schema version this package knows."""
    return available_migrations()[-1].version


def migrate(dsn: str) -> list[str]:
    """Apply every pending migration; returns the names applied (empty when up to date)."""
    with connection(dsn, application_name="reproq-migrate") as conn:
        return migrate_conn(conn)


def migrate_conn(conn: Conn) -> list[str]:
    """Apply pending migrations on an open autocommit connection."""
    applied_now: list[str] = []
    with translate_errors():
        conn.execute(q("migrate_lock"), {"lock_id": MIGRATE_LOCK_ID})
        try:
            conn.execute(q("migrate_create_version_table"))
            done = {row["version"] for row in conn.execute(q("migrate_applied_versions"))}
            for migration in available_migrations():
                if migration.version in done:
                    continue
                with conn.transaction():
                    # Migration files hold several statements and no parameters.
                    conn.execute(migration.sql)
                    conn.execute(
                        q("migrate_record_version"),
                        {"version": migration.version, "name": migration.name},
                    )
                applied_now.append(f"{migration.version:04d}_{migration.name}")
        finally:
            conn.execute(q("migrate_unlock"), {"lock_id": MIGRATE_LOCK_ID})
    return applied_now


def current_version(conn: Conn) -> int:
    """The newest applied schema version (0 when reproq never migrated this database)."""
    with translate_errors():
        row = conn.execute(q("migrate_version_table_exists")).fetchone()
        if not row or not row["present"]:
            return 0
        versions = [r["version"] for r in conn.execute(q("migrate_applied_versions"))]
    return max(versions, default=0)


def prepare_schema(
    dsn: str, *, apply: bool, application_name: str = "reproq-migrate"
) -> tuple[int, list[str]]:
    """Bring the schema at *dsn* to this package's version before a process runs on it.

    With *apply*, pending migrations are applied (under the advisory lock, so processes
    that start together apply each once); without, a schema that is behind raises
    :class:`SchemaError`. An up-to-date schema gets no DDL at all, so a role that may not
    create tables can run on it. Returns the schema version and the migrations applied
    now. Connecting first turns an unreachable database into one line naming the
    (redacted) DSN.
    """
    with connection(dsn, application_name=application_name) as conn:
        have = current_version(conn)
        if have >= latest_version():
            return have, []
        if not apply:
            require_current_schema(conn)
        applied = migrate_conn(conn)
        return current_version(conn), applied


def require_current_schema(conn: Conn) -> None:
    """Raise :class:`SchemaError` unless every known migration has been applied."""
    have = current_version(conn)
    want = latest_version()
    if have < want:
        raise SchemaError(
            f"database schema is at version {have}, this reproq needs {want}: "
            "run `reproq migrate` (or start `reproq up`, which migrates)"
        )
