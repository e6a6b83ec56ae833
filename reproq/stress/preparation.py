"""The first phase of a torture run: the database it runs in, made ready.

:func:`torture_database` hands out the database: a fresh one on a throwaway PostgreSQL
of the harness's own by default (so the server itself can be restarted, crashed and
frozen), or the database given with ``--dsn``. :func:`prepare` migrates it, forces
``synchronous_commit = on``, creates the execution ledger, the throttled queue's rate
limit and a few every-minute schedules, and notes where the run's rows begin.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from reproq.db import Conn, translate_errors
from reproq.errors import DatabaseError
from reproq.ops import admin
from reproq.pg.cluster import LocalPostgres
from reproq.pg.migrations import migrate
from reproq.pg.throwaway import (
    ServerKind,
    create_database,
    drop_database,
    dsn_with_dbname,
    throwaway_server,
)
from reproq.queries import q
from reproq.stress.ledger import create_ledger
from reproq.stress.report import Progress
from reproq.stress.workload import THROTTLED_BURST, THROTTLED_QUEUE, THROTTLED_RATE, schedules_for

__all__ = ["TORTURE_SETTINGS", "Prepared", "TortureDatabase", "prepare", "torture_database"]

logger = logging.getLogger("reproq.stress.torture")

TORTURE_SETTINGS: dict[str, str] = {
    # A crash restart must not lose acknowledged commits, or the checker would blame the
    # worker for the database's forgetfulness. fsync can stay off: the machine does not
    # crash, only the server process does, and the OS keeps what it was given.
    "synchronous_commit": "on",
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}
"""Server settings of the throwaway server a torture run starts."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TortureDatabase:
    """Where a torture run works."""

    dsn: str
    server: LocalPostgres | None
    """The server behind ``dsn`` when the harness controls it (restarts, signals)."""
    kind: str
    """``local``, ``docker`` or ``external``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Prepared:
    """What preparing the database left for the later phases."""

    server_info: dict[str, Any]
    first_id: int
    """The largest result_id before the run: the run's rows come after it."""
    schedule_names: frozenset[str]
    notes: tuple[str, ...] = ()


@contextlib.contextmanager
def torture_database(
    *,
    dsn: str | None,
    server: LocalPostgres | None,
    need_local: bool,
    progress: Progress,
) -> Iterator[TortureDatabase]:
    """The given database, or a fresh one on a throwaway server (dropped at exit)."""
    if dsn:
        kind = "local" if server is not None else "external"
        yield TortureDatabase(dsn=dsn, server=server, kind=kind)
        return
    progress.note("starting a throwaway PostgreSQL server…")
    with throwaway_server(settings=TORTURE_SETTINGS, require_local=need_local) as info:
        name = f"reproq_torture_{uuid.uuid4().hex[:10]}"
        create_database(info.dsn, name)
        try:
            local = info.local if info.kind is ServerKind.LOCAL else None
            yield TortureDatabase(dsn=dsn_with_dbname(info.dsn, name), server=local, kind=info.kind)
        finally:
            try:
                drop_database(info.dsn, name)
            except DatabaseError as exc:
                logger.warning("could not drop %s: %s", name, exc)


def prepare(
    db: TortureDatabase, *, run_id: str, beats: int, connect: Callable[[], Conn]
) -> Prepared:
    """Migrate and seed the database for a run (see the module docstring)."""
    migrate(db.dsn)
    notes: list[str] = []
    with connect() as conn, translate_errors():
        info = conn.execute(q("stress_server_info")).fetchone() or {}
        dbname = conn.execute(q("stress_database_name")).fetchone() or {}
        try:
            conn.execute(
                sql.SQL(q("stress_force_synchronous_commit")).format(
                    name=sql.Identifier(str(dbname.get("name")))
                )
            )
        except Exception as exc:  # lacking the privilege only weakens crash faults
            notes.append(f"could not force synchronous_commit=on: {exc}")
        create_ledger(conn)
        admin.set_limit(conn, f"queue:{THROTTLED_QUEUE}", THROTTLED_RATE, THROTTLED_BURST)
        first = conn.execute(q("stress_max_result_id")).fetchone()
        first_id = int(first["result_id"]) if first else 0
        names: list[str] = []
        if beats > 0:
            for spec in schedules_for(run_id):
                conn.execute(
                    q("stress_insert_schedule"),
                    {
                        "name": spec.name,
                        "cron_expr": spec.cron_expr,
                        "task_path": spec.task_path,
                        "payload_json": Jsonb({"kwargs": dict(spec.kwargs)}),
                        "queue_name": spec.queue_name,
                        "max_attempts": spec.max_attempts,
                    },
                )
                names.append(spec.name)
    return Prepared(
        server_info={
            "kind": db.kind,
            "server_version": info.get("server_version"),
            "synchronous_commit": dbname.get("synchronous_commit"),
        },
        first_id=first_id,
        schedule_names=frozenset(names),
        notes=tuple(notes),
    )
