"""Which database a command uses: one resolver, fed by flags, the environment and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from reproq.cli import build_parser
from reproq.cli._common import dsn_from_args
from reproq.db import DSN_ENV_VARS, connect, dsn_from_env, resolve_dsn
from reproq.errors import ConfigError, DatabaseError, UsageError
from reproq.producer.client import Client


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("REPROQ_CONFIG", "REPROQ_DSN", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def _dsn(*argv: str, command: str = "migrate") -> str:
    return dsn_from_args(build_parser().parse_args([command, *argv]))


def test_without_any_source_the_error_says_where_a_dsn_can_come_from() -> None:
    with pytest.raises(UsageError, match=r"pass --dsn or set DATABASE_URL"):
        _dsn()
    with pytest.raises(UsageError):
        resolve_dsn(None, env={})


def test_reproq_dsn_beats_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DSN_ENV_VARS == ("REPROQ_DSN", "DATABASE_URL")
    monkeypatch.setenv("DATABASE_URL", "postgresql://seed/db")
    assert _dsn() == "postgresql://seed/db"
    assert dsn_from_env() == ("DATABASE_URL", "postgresql://seed/db")
    monkeypatch.setenv("REPROQ_DSN", "postgresql://reproq/db")
    assert _dsn() == "postgresql://reproq/db"
    assert dsn_from_env({"REPROQ_DSN": "", "DATABASE_URL": "x"}) == ("DATABASE_URL", "x")


def test_the_flag_beats_the_environment_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[database]\ndsn = "postgresql://file/db"\n')
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    assert _dsn("--config", str(path), "--dsn", "postgresql://flag/db") == "postgresql://flag/db"


def test_a_config_with_a_dsn_gives_it(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[database]\ndsn = "postgresql://file/db"\n')
    assert _dsn("--config", str(path)) == "postgresql://file/db"


def test_the_environment_overrides_the_config_dsn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[database]\ndsn = "postgresql://file/db"\n')
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    assert _dsn("--config", str(path)) == "postgresql://env/db"


def test_reproq_config_names_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text('dsn = "postgresql://from-config/db"\n')
    monkeypatch.setenv("REPROQ_CONFIG", str(path))
    assert _dsn() == "postgresql://from-config/db"


def test_a_go_shaped_yaml_file_in_the_working_directory_is_found(tmp_path: Path) -> None:
    # As the Go worker does: reproq.yaml, reproq.yml, reproq.toml (and dot-files) in the cwd.
    (tmp_path / "reproq.yaml").write_text('dsn: "postgresql://yaml/db"\n')
    assert _dsn() == "postgresql://yaml/db"
    assert _dsn(command="beat") == "postgresql://yaml/db"


@pytest.mark.parametrize("command", ["migrate", "beat", "worker", "status", "enqueue", "tui"])
def test_every_command_resolves_the_same_way(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[database]\ndsn = "postgresql://file/db"\n')
    extra = ["tests.tasks.sample.add"] if command == "enqueue" else []
    assert _dsn("--config", str(path), *extra, command=command) == "postgresql://file/db"
    monkeypatch.setenv("REPROQ_DSN", "postgresql://env/db")
    assert _dsn("--config", str(path), *extra, command=command) == "postgresql://env/db"


def test_the_producer_client_uses_the_same_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPROQ_DSN", "postgresql://reproq/db")
    assert Client().dsn == "postgresql://reproq/db"
    monkeypatch.delenv("REPROQ_DSN")
    with pytest.raises(UsageError):
        Client()


def test_embedded_database_that_is_not_running_says_how_to_start_it(tmp_path: Path) -> None:
    data = tmp_path / "pgdata"
    path = tmp_path / "dev.toml"
    path.write_text(f'[database]\nembedded_data_dir = "{data}"\n')
    with pytest.raises(ConfigError) as info:
        _dsn("--config", str(path))
    message = str(info.value)
    assert f"{path} has no database.dsn" in message
    assert str(data) in message
    assert f"reproq up {path}" in message
    assert "--dsn" in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize("dsn", ["mysql://app:s3cret@db/app", "sqlite:///tmp/app.db"])
def test_a_url_of_another_database_is_named_as_such_without_its_password(dsn: str) -> None:
    with pytest.raises(DatabaseError) as caught:
        connect(dsn)
    message = str(caught.value)
    assert "is not a PostgreSQL URL: use postgresql://… or key=value pairs" in message
    assert "s3cret" not in message


def test_a_postgresql_url_gets_no_scheme_hint() -> None:
    with pytest.raises(DatabaseError) as caught:
        connect("postgresql://app@127.0.0.1:1/app?sslmode=bogus")
    assert "not a PostgreSQL URL" not in str(caught.value)
