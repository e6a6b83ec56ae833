"""The DSN every command uses when it is not given --dsn (``dsn_for_command``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reproq.config import dsn_for_command
from reproq.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REPROQ_CONFIG", "REPROQ_DSN", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_without_a_config_the_environment_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    assert dsn_for_command(None) is None
    monkeypatch.setenv("DATABASE_URL", "postgresql://seed/db")
    assert dsn_for_command(None) == "postgresql://seed/db"
    monkeypatch.setenv("REPROQ_DSN", "postgresql://reproq/db")
    assert dsn_for_command(None) == "postgresql://reproq/db"


def test_a_config_with_a_dsn_gives_it(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[database]\ndsn = "postgresql://file/db"\n')
    assert dsn_for_command(str(path)) == "postgresql://file/db"


def test_the_environment_overrides_the_config_dsn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[database]\ndsn = "postgresql://file/db"\n')
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    assert dsn_for_command(str(path)) == "postgresql://env/db"


def test_reproq_config_names_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text('dsn = "postgresql://from-config/db"\n')
    monkeypatch.setenv("REPROQ_CONFIG", str(path))
    assert dsn_for_command(None) == "postgresql://from-config/db"


def test_embedded_database_that_is_not_running_says_how_to_start_it(tmp_path: Path) -> None:
    data = tmp_path / "pgdata"
    path = tmp_path / "dev.toml"
    path.write_text(f'[database]\nembedded_data_dir = "{data}"\n')
    with pytest.raises(ConfigError) as info:
        dsn_for_command(str(path))
    message = str(info.value)
    assert f"{path} has no database.dsn" in message
    assert str(data) in message
    assert f"reproq up {path}" in message
    assert "--dsn" in message
    assert info.value.exit_code == 2
