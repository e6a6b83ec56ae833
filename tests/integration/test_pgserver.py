"""Local PostgreSQL clusters and throwaway servers, run for real (as root too)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from reproq.errors import LocalServerError
from reproq.pg.cluster import LocalPostgres, attach_dsn
from reproq.pg.throwaway import (
    ENV_TEST_DSN,
    TEMP_PREFIX,
    TEST_SETTINGS,
    ServerInfo,
    ServerKind,
    create_database,
    drop_database,
    dsn_with_dbname,
    sweep_stale_clusters,
    throwaway_server,
)
from reproq.pg.tools import find_postgres_bin_dir

# Killing the server loses commits still in WAL buffers under synchronous_commit=off.
CRASH_SAFE = {"fsync": "off"}


@pytest.fixture
def cluster_root() -> Iterator[Path]:
    """A scratch directory the cluster account can traverse (pytest's tmp_path is private
    to root), with any cluster left in it stopped afterwards."""
    root = Path(tempfile.mkdtemp(prefix="reproq-it-"))
    root.chmod(0o711)
    try:
        yield root
    finally:
        for pid_file in root.rglob("postmaster.pid"):
            LocalPostgres(pid_file.parent).stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def _scalar(dsn: str, query: str) -> object:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def _execute(dsn: str, query: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(query)


def test_cluster_keeps_its_data_across_restart_and_stop_start(cluster_root: Path) -> None:
    server = LocalPostgres(cluster_root / "data", settings=CRASH_SAFE)
    server.init()
    assert server.is_initialized() and not server.is_running()
    server.start()
    try:
        assert server.is_running() and server.pid is not None
        _execute(server.dsn(), "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        port_before = server.port
        server.restart()
        assert server.port == port_before
        assert _scalar(server.dsn(), "SELECT v FROM kept") == 42
        server.stop()
        assert not server.is_running() and server.pid is None
        server.start()
        assert _scalar(server.dsn(), "SELECT v FROM kept") == 42
        assert _scalar(server.dsn(), "SHOW fsync") == "off"
        assert _scalar(server.dsn(), "SHOW server_encoding") == "UTF8"
    finally:
        server.stop()
    assert server.log_path.is_file()


def test_start_adopts_a_server_already_running_in_the_data_dir(cluster_root: Path) -> None:
    with LocalPostgres(cluster_root / "data") as first:
        second = LocalPostgres(cluster_root / "data")
        second.start()
        assert second.pid == first.pid
        assert second.port == first.port
        assert second.dsn() == first.dsn()
    assert not second.is_running()


def test_attach_dsn_finds_a_running_server_and_none_once_stopped(cluster_root: Path) -> None:
    data = cluster_root / "data"
    assert attach_dsn(data) is None
    with LocalPostgres(data) as server:
        found = attach_dsn(data)
        assert found is not None
        assert _scalar(found, "SELECT current_setting('data_directory')") == str(data)
        assert attach_dsn(data, dbname="template1") == server.dsn("template1")
    assert attach_dsn(data) is None


def test_kill_then_start_recovers_committed_data(cluster_root: Path) -> None:
    server = LocalPostgres(cluster_root / "data", settings=CRASH_SAFE)
    server.start()
    try:
        _execute(server.dsn(), "CREATE TABLE t (v int); INSERT INTO t VALUES (1), (2)")
        open_conn = psycopg.connect(server.dsn(), autocommit=True)
        old_pid = server.pid
        assert old_pid is not None
        server.kill()
        assert not server.is_running() and server.pid is None
        assert attach_dsn(server.data_dir) is None
        with pytest.raises(psycopg.OperationalError):
            open_conn.execute("SELECT 1")
        open_conn.close()
        server.start()
        assert server.pid not in (None, old_pid)
        assert _scalar(server.dsn(), "SELECT sum(v) FROM t") == 3
    finally:
        server.stop()


def test_start_failure_raises_with_the_server_log_tail(cluster_root: Path) -> None:
    server = LocalPostgres(cluster_root / "data", settings={"shared_buffers": "lots"})
    with pytest.raises(LocalServerError) as failure:
        server.start(timeout=20)
    message = str(failure.value)
    assert "did not start" in message
    assert "shared_buffers" in message
    assert not server.is_running()


def test_a_long_data_dir_path_gets_a_short_socket_dir(cluster_root: Path) -> None:
    data = cluster_root / ("d" * 60) / ("e" * 60) / "data"
    with LocalPostgres(data) as server:
        assert server.socket_dir != data
        assert len(str(server.socket_dir)) < 100
        assert _scalar(server.dsn(), "SELECT 1") == 1
        assert attach_dsn(data) == server.dsn()
        socket_dir = server.socket_dir
        server.restart()
        assert server.socket_dir == socket_dir
    shutil.rmtree(socket_dir, ignore_errors=True)


def test_listen_tcp_also_accepts_connections_on_localhost(cluster_root: Path) -> None:
    with LocalPostgres(cluster_root / "data", listen_tcp=True) as server:
        tcp = server.dsn(tcp=True)
        assert "127.0.0.1" in tcp
        assert _scalar(tcp, "SELECT inet_server_addr()::text") == "127.0.0.1/32"
        assert _scalar(server.dsn(), "SELECT inet_server_addr()") is None


def test_found_binaries_run_a_cluster_of_their_major_version(cluster_root: Path) -> None:
    bin_dir = find_postgres_bin_dir()
    with LocalPostgres(cluster_root / "data", bin_dir=bin_dir) as server:
        version = _scalar(server.dsn(), "SHOW server_version_num")
    major = int((cluster_root / "data" / "PG_VERSION").read_text())
    assert int(str(version)) // 10000 == major
    assert find_postgres_bin_dir(major=major) == bin_dir


def test_throwaway_local_server_is_stopped_and_removed_at_exit() -> None:
    with throwaway_server(settings=TEST_SETTINGS, require_local=True) as info:
        assert info.kind == ServerKind.LOCAL and info.local is not None
        root = info.local.data_dir.parent
        assert root.name.startswith(TEMP_PREFIX)
        assert _scalar(info.dsn, "SHOW synchronous_commit") == "off"
        assert _scalar(info.dsn, "SHOW max_connections") == "200"
        pid = info.local.pid
        assert pid is not None
    assert not root.exists()
    assert not info.local.is_running()


def test_throwaway_server_uses_the_server_named_by_the_environment(
    pg_server: ServerInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_TEST_DSN, pg_server.dsn)
    with throwaway_server(settings=TEST_SETTINGS) as info:
        assert info == ServerInfo(dsn=pg_server.dsn, kind=ServerKind.EXTERNAL)
        assert _scalar(info.dsn, "SELECT 1") == 1


def test_sweep_stops_and_removes_the_cluster_of_a_killed_owner(cluster_root: Path) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from reproq.pg.throwaway import throwaway_server\n"
            "with throwaway_server(settings={'fsync': 'off'}, require_local=True) as info:\n"
            "    print(info.local.data_dir, flush=True)\n"
            "    time.sleep(300)\n",
        ],
        env={**os.environ, "TMPDIR": str(cluster_root)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        data = Path(child.stdout.readline().strip())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert data.parent.parent == cluster_root
    orphan = LocalPostgres(data)
    assert orphan.is_running()  # the owner died without tearing its server down

    removed = sweep_stale_clusters(cluster_root)

    assert removed == [data.parent]
    assert not data.parent.exists()
    assert not orphan.is_running()


def test_sweep_leaves_clusters_whose_owner_is_alive(cluster_root: Path) -> None:
    with throwaway_server(settings=TEST_SETTINGS, require_local=True) as info:
        assert info.local is not None
        live_root = info.local.data_dir.parent
        assert live_root not in sweep_stale_clusters()
        assert info.local.is_running()
        info.local.stop()
        # Even with its server down, a live owner's cluster is not swept.
        assert live_root not in sweep_stale_clusters()
        assert live_root.exists()


def test_drop_database_disconnects_sessions_still_using_it(pg_server: ServerInfo) -> None:
    name = "reproq_pgserver_drop_me"
    drop_database(pg_server.dsn, name)
    create_database(pg_server.dsn, name)
    leaked = psycopg.connect(dsn_with_dbname(pg_server.dsn, name), autocommit=True)
    try:
        drop_database(pg_server.dsn, name)
        assert (
            _scalar(pg_server.dsn, f"SELECT count(*) FROM pg_database WHERE datname = '{name}'")
            == 0
        )
        with pytest.raises(psycopg.OperationalError):
            leaked.execute("SELECT 1")
    finally:
        leaked.close()
    drop_database(pg_server.dsn, name)  # absent: still fine


def test_create_database_from_a_template_copies_its_tables(pg_server: ServerInfo) -> None:
    template, copy = "reproq_pgserver_tpl_src", 'reproq pgserver "copy"'
    for name in (template, copy):
        drop_database(pg_server.dsn, name)
    create_database(pg_server.dsn, template)
    try:
        _execute(dsn_with_dbname(pg_server.dsn, template), "CREATE TABLE marker (v text)")
        create_database(pg_server.dsn, copy, template=template)
        copied = _scalar(dsn_with_dbname(pg_server.dsn, copy), "SELECT to_regclass('marker')::text")
        assert copied == "marker"
    finally:
        drop_database(pg_server.dsn, copy)
        drop_database(pg_server.dsn, template)


def test_each_test_database_is_migrated_and_empty_dsn_has_no_schema(
    dsn: str, empty_dsn: str
) -> None:
    assert dsn != empty_dsn
    assert _scalar(dsn, "SELECT to_regclass('task_runs')::text") == "task_runs"
    assert _scalar(dsn, "SELECT count(*) FROM task_runs") == 0
    assert _scalar(empty_dsn, "SELECT to_regclass('task_runs')") is None
