"""Throwaway PostgreSQL servers for tests and benchmarks, and databases on them.

:func:`throwaway_server` hands out a server: an existing one (``$REPROQ_TEST_DSN``), a
Docker container, or a local cluster (:class:`~reproq.pg.cluster.LocalPostgres`) in a
fresh temp directory that is deleted at exit. Clusters left behind by processes that
died are swept (:func:`sweep_stale_clusters`). :func:`create_database` and
:func:`drop_database` give each test or scenario a database of its own.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from reproq.db import connection
from reproq.errors import LocalServerError
from reproq.pg.cluster import SUPERUSER, LocalPostgres, check_settings
from reproq.pg.processes import pid_alive, process_start_time
from reproq.queries import q

__all__ = [
    "DOCKER_IMAGE",
    "ENV_TEST_DSN",
    "TEMP_PREFIX",
    "TEST_SETTINGS",
    "ServerInfo",
    "ServerKind",
    "create_database",
    "drop_database",
    "dsn_with_dbname",
    "sweep_stale_clusters",
    "throwaway_server",
]

log = logging.getLogger("reproq.pgserver")

ENV_TEST_DSN = "REPROQ_TEST_DSN"
"""Environment variable naming an existing server for the test suite to use."""

TEMP_PREFIX = "reproq-pg-"
"""Name prefix of throwaway cluster directories in the temp directory."""

TEST_SETTINGS: Mapping[str, str] = MappingProxyType(
    {
        # Durability is worthless for data that is deleted at the end of the run.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        # Room for pools, workers and concurrency tests running side by side.
        "max_connections": "200",
    }
)
"""Server settings that make a throwaway test server fast (never for data you keep)."""

DOCKER_IMAGE = "postgres:16-alpine"
"""Image used when the throwaway server comes from Docker (testcontainers)."""

_OWNER_FILE = "owner.pid"
_DATA_SUBDIR = "data"
# A temp cluster directory without an owner record is left alone this long, because its
# creator writes the record right after creating the directory.
_OWNERLESS_GRACE_SECONDS = 60.0


class ServerKind(StrEnum):
    """Where a throwaway server came from."""

    EXTERNAL = "external"
    DOCKER = "docker"
    LOCAL = "local"


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerInfo:
    """A PostgreSQL server to run tests or benchmarks against."""

    dsn: str
    """DSN of an administrative database (``postgres``) on the server."""
    kind: ServerKind
    local: LocalPostgres | None = None
    """The cluster itself when ``kind`` is local, so callers can restart or kill it."""


# --------------------------------------------------------------------------- databases


def dsn_with_dbname(dsn: str, dbname: str) -> str:
    """The same DSN (URL or key/value) pointing at ``dbname``, as a key/value string."""
    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def create_database(admin_dsn: str, name: str, template: str | None = None) -> None:
    """Create database ``name`` (a copy of ``template`` when given) on the server."""
    if template is None:
        statement = sql.SQL(q("pgserver_create_database")).format(name=sql.Identifier(name))
    else:
        statement = sql.SQL(q("pgserver_create_database_from_template")).format(
            name=sql.Identifier(name), template=sql.Identifier(template)
        )
    with connection(admin_dsn, application_name="reproq-pgserver") as conn:
        conn.execute(statement)


def drop_database(admin_dsn: str, name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting anyone still connected to it."""
    with connection(admin_dsn, application_name="reproq-pgserver") as conn:
        conn.execute(q("pgserver_terminate_connections"), {"name": name})
        # FORCE (PostgreSQL 13+) also stops connections that arrive after the terminate.
        if conn.info.server_version >= 130000:
            text = q("pgserver_drop_database_force")
        else:
            text = q("pgserver_drop_database")
        conn.execute(sql.SQL(text).format(name=sql.Identifier(name)))


# --------------------------------------------------------------------------- throwaway


def _write_owner(root: Path) -> None:
    pid = os.getpid()
    record = f"{pid} {process_start_time(pid) or ''}".strip()
    (root / _OWNER_FILE).write_text(record + "\n", encoding="utf-8")


def _owner_alive(root: Path) -> bool | None:
    """Whether the process that made ``root`` still runs; None without an owner record."""
    try:
        parts = (root / _OWNER_FILE).read_text(encoding="utf-8").split()
        pid = int(parts[0])
    except (OSError, ValueError, IndexError):
        return None
    if not pid_alive(pid):
        return False
    recorded = parts[1] if len(parts) > 1 else None
    # A different start time means the pid now belongs to another process.
    return recorded is None or process_start_time(pid) in (None, recorded)


def _is_stale(root: Path) -> bool:
    owner = _owner_alive(root)
    if owner is not None:
        return not owner
    try:
        age = time.time() - root.stat().st_mtime
    except OSError:
        return False
    return age > _OWNERLESS_GRACE_SECONDS


def _discard_cluster(root: Path) -> None:
    """Stop the cluster under ``root`` if it runs, then delete ``root``."""
    server = LocalPostgres(root / _DATA_SUBDIR)
    if server.is_running():
        try:
            server.stop("immediate", timeout=15)
        except LocalServerError as exc:
            log.warning("stopping %s failed (%s); killing it", server.data_dir, exc)
            server.kill()
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        log.warning("could not remove %s completely", root)


def sweep_stale_clusters(tmp_root: Path | None = None) -> list[Path]:
    """Stop and delete throwaway clusters whose owning process is gone.

    Looks at ``reproq-pg-*`` directories in ``tmp_root`` (default: the temp directory).
    A directory is stale when the process recorded in its owner file no longer runs, or
    when it has no owner record and is older than a minute. Clusters of live processes
    are never touched, even if their server is down (their owner may be restarting it).
    Returns the directories removed.
    """
    root = Path(tmp_root) if tmp_root is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    for entry in sorted(root.glob(f"{TEMP_PREFIX}*")):
        if entry.is_symlink() or not entry.is_dir() or not _is_stale(entry):
            continue
        log.info("removing stale throwaway cluster %s", entry)
        _discard_cluster(entry)
        removed.append(entry)
    return removed


def _docker_answers(timeout: float = 2.0) -> bool:
    try:
        docker: Any = importlib.import_module("docker")
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception as exc:  # any failure at all means there is no usable daemon
        log.debug("no Docker daemon: %s", exc)
        return False


def _postgres_container_class() -> Any | None:
    for module_name in ("testcontainers.community.postgres", "testcontainers.postgres"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.PostgresContainer
    return None


@contextmanager
def _docker_server(container_class: Any, settings: Mapping[str, str]) -> Iterator[ServerInfo]:
    container = container_class(
        DOCKER_IMAGE, username=SUPERUSER, password=SUPERUSER, dbname="postgres", driver=None
    )
    if settings:
        command = ["postgres"]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        container.with_command(command)
    container.start()
    try:
        yield ServerInfo(dsn=str(container.get_connection_url()), kind=ServerKind.DOCKER)
    finally:
        container.stop()


@contextmanager
def _local_server(settings: Mapping[str, str], listen_tcp: bool) -> Iterator[ServerInfo]:
    sweep_stale_clusters()
    root = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    try:
        _write_owner(root)
        # The cluster account (when root) must be able to pass through to the data dir.
        root.chmod(0o711)
        server = LocalPostgres(root / _DATA_SUBDIR, settings=settings, listen_tcp=listen_tcp)
        server.start()
        yield ServerInfo(dsn=server.dsn(), kind=ServerKind.LOCAL, local=server)
    finally:
        _discard_cluster(root)


@contextmanager
def throwaway_server(
    *,
    settings: Mapping[str, str] | None = None,
    require_local: bool = False,
    listen_tcp: bool = False,
) -> Iterator[ServerInfo]:
    """A PostgreSQL server for tests or benchmarks, gone (if created here) at exit.

    Providers, first match wins: ``$REPROQ_TEST_DSN`` (an existing server, used as is);
    a Docker daemon answering a ping within 2 s, with testcontainers installed (extra
    ``stress``); else a local cluster in a fresh ``reproq-pg-*`` temp directory, which is
    stopped and deleted at exit (stale ones left by dead processes are swept first).

    ``settings`` (e.g. :data:`TEST_SETTINGS`) apply to servers created here, not to an
    external one. ``require_local`` skips the first two providers, for callers that need
    :attr:`ServerInfo.local` to restart or kill the server. ``listen_tcp`` makes a local
    cluster listen on 127.0.0.1 as well.
    """
    checked = check_settings(settings or {})
    if not require_local:
        external = os.environ.get(ENV_TEST_DSN, "").strip()
        if external:
            yield ServerInfo(dsn=external, kind=ServerKind.EXTERNAL)
            return
        container_class = _postgres_container_class()
        if container_class is not None and _docker_answers():
            with _docker_server(container_class, checked) as info:
                yield info
            return
    with _local_server(checked, listen_tcp) as info:
        yield info
