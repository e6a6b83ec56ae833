"""No password of any DSN form reaches a log line, ``config show``, ``/healthz`` or a CLI error."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from reproq.cli import main
from reproq.config import load_settings
from reproq.runtime.endpoint import Endpoint
from reproq.runtime.supervisor import Runtime
from tests.dsn_forms import MARK, UNREACHABLE, Server, all_forms, connectable_forms
from tests.integration.up_harness import toml_string

FORMS = all_forms(UNREACHABLE)
IDS = [label for label, _ in FORMS]


def _server(dsn: str) -> Server:
    params = conninfo_to_dict(dsn)
    return Server(
        host=str(params["host"]),
        port=int(params["port"]),
        user=str(params["user"]),
        dbname=str(params["dbname"]),
    )


@pytest.mark.parametrize(("label", "form"), FORMS, ids=IDS)
def test_config_show_redacts_the_dsn_from_the_environment_and_from_a_file(
    label: str,
    form: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("REPROQ_DSN", raising=False)
    monkeypatch.delenv("REPROQ_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", form)
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "# env:DATABASE_URL" in out
    assert MARK not in out

    monkeypatch.delenv("DATABASE_URL")
    path = tmp_path / "reproq.toml"
    path.write_text(f"[database]\ndsn = {toml_string(form)}\n", encoding="utf-8")
    assert main(["config", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"# file:{path}" in out
    assert MARK not in out


@pytest.mark.parametrize(("label", "form"), FORMS, ids=IDS)
def test_cli_errors_about_an_unreachable_database_carry_no_password(
    label: str, form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["migrate", "--dsn", form], ["status", "--dsn", form]):
        assert main(argv) == 1
        captured = capsys.readouterr()
        assert captured.err.startswith("reproq: error: ")
        assert MARK not in captured.err + captured.out


@pytest.fixture
def endpoint_for() -> Iterator[type[Endpoint]]:
    started: list[Endpoint] = []

    class Tracked(Endpoint):
        def start(self) -> None:
            super().start()
            started.append(self)

    yield Tracked
    for endpoint in started:
        endpoint.close()


def _get(url: str, accept: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if accept is not None:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_healthz_served_over_http_while_the_database_is_down_names_no_password(
    endpoint_for: type[Endpoint],
) -> None:
    from reproq.config import MetricsSettings

    for label, form in FORMS:
        endpoint = endpoint_for(MetricsSettings(enabled=True, addr="127.0.0.1:0"), dsn=form)
        endpoint.start()
        status, body = _get(f"{endpoint.url}/healthz", accept="application/json")
        assert status == 503, label
        doc = json.loads(body)
        assert doc["status"] == "unavailable"
        assert any(reason.startswith("database unreachable") for reason in doc["reasons"])
        assert MARK not in body.decode(), label
        status, body = _get(f"{endpoint.url}/healthz")
        assert (status, body) == (503, b"unhealthy"), label
        status, body = _get(f"{endpoint.url}/metrics")
        assert status == 200 and MARK not in body.decode(), label
        endpoint.close()


def test_the_runtime_and_worker_start_lines_name_the_database_without_its_password(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for label, form in connectable_forms(_server(dsn)):
        caplog.clear()
        settings = load_settings(
            None,
            env={},
            overrides={
                "database.dsn": form,
                "worker.allowed_task_modules": "reproq.demo.",
                "worker.shutdown_timeout": "1s",
                "beat.enabled": False,
                "metrics.enabled": False,
            },
        )
        runtime = Runtime(settings, migrate=False)
        runtime.start()
        runtime.stop()
        database = [
            r.getMessage() for r in caplog.records if r.getMessage().startswith("database:")
        ]
        started = [r.getMessage() for r in caplog.records if " started on " in r.getMessage()]
        assert len(database) == 1 and len(started) == 1, label
        assert "***" in database[0] and "***" in started[0], label
        assert MARK not in caplog.text, label
