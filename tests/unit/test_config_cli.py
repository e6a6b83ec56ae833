"""``reproq config check|show|init`` exit codes and output."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from reproq.cli import main
from reproq.config import starter_config

REPO = Path(__file__).resolve().parents[2]
DEV = str(REPO / "configs" / "dev.toml")


def test_check_prints_ok_for_a_valid_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", DEV]) == 0
    out, err = capsys.readouterr()
    assert out == f"{DEV}: ok\n"
    assert err == ""


def test_check_prints_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[worker]\nlease_seconds = "x"\n[[pools]]\nname = "p"\nconcurrency = 0\n')
    assert main(["config", "check", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{bad}:2: worker.lease_seconds: invalid duration 'x': expected seconds or a number "
        "with a unit: 500ms, 30s, 5m, 1h, 7d, or combined like 1h30m",
        f'{bad}:3: pools[0]: pool has no queues: add queues = ["..."]',
        f"{bad}:5: pools[0].concurrency: must be positive, got 0",
    ]


def test_check_several_files_fails_if_any_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[wrker]\n")
    assert main(["config", "check", DEV, str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == f"{DEV}: ok\n"
    assert err == f"{bad}:1: wrker: unknown table; did you mean 'worker'?\n"


def test_check_prints_warnings_but_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "flat.toml"
    path.write_text('[worker]\npoll_min_backoff = "100ms"\n')
    assert main(["config", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok\n"
    assert err.startswith(f"warning: {path}:2: worker.poll_min_backoff: ")


def test_show_prints_toml_with_sources(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPROQ_POLL_INTERVAL", "2s")
    assert main(["config", "show", DEV]) == 0
    out = capsys.readouterr().out
    doc = tomllib.loads(out)
    assert doc["worker"]["allowed_task_modules"] == ["reproq.demo."]
    assert doc["worker"]["poll_interval"] == 2.0
    assert f"# file:{DEV}" in out
    assert "# env:REPROQ_POLL_INTERVAL" in out


def test_show_uses_reproq_config_when_no_file_is_given(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPROQ_CONFIG", DEV)
    assert main(["config", "show"]) == 0
    assert f"(from {DEV})" in capsys.readouterr().out


def test_show_of_a_bad_file_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[beat]\ntick = -1\n")
    assert main(["config", "show", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"reproq: error: {bad}:2: beat.tick: ")


def test_init_writes_the_starter_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mine.toml"
    assert main(["config", "init", str(path)]) == 0
    assert path.read_text() == starter_config()
    assert f"wrote {path}" in capsys.readouterr().out
    path.write_text("# edited\n")
    assert main(["config", "init", str(path)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert path.read_text() == "# edited\n"
    assert main(["config", "init", str(path), "--force"]) == 0
    assert path.read_text() == starter_config()


def test_init_writes_yaml_for_a_yaml_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("reproq.yaml", "other.YML"):
        assert main(["config", "init", name]) == 0
        assert (tmp_path / name).read_text() == starter_config(name)
        assert (tmp_path / name).read_text().startswith("# reproq configuration")
        assert "\nworker:\n" in (tmp_path / name).read_text()
        assert main(["config", "check", name]) == 0
    assert "other.YML: ok" in capsys.readouterr().out


def test_init_defaults_to_reproq_toml_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["config", "init"]) == 0
    assert (tmp_path / "reproq.toml").read_text() == starter_config()
    assert main(["config", "check", "reproq.toml"]) == 0
