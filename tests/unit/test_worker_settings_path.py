"""`reproq worker` builds its settings through the one loader: defaults < file < env < flags.

The Go worker's environment variables and flags are read too, and the executor follows one
documented rule (docs/configuration.md, "Which executor runs the tasks").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from reproq.cli import build_parser, main
from reproq.cli.worker import options_from_args, worker_settings
from reproq.config import ExecutorKind, SubprocessOptions

_WORKER_ENV = (
    "REPROQ_CONFIG",
    "REPROQ_DSN",
    "DATABASE_URL",
    "WORKER_ID",
    "REPROQ_WORKER_ID",
    "REPROQ_LEASE_SECONDS",
    "REPROQ_ALLOWED_TASK_MODULES",
    "ALLOWED_TASK_MODULES",
    "QUEUE_NAMES",
    "REPROQ_QUEUES",
    "PRIORITY_AGING_FACTOR",
    "REPROQ_PRIORITY_AGING_FACTOR",
    "REPROQ_CONCURRENCY",
    "REPROQ_EXECUTOR",
    "REPROQ_LOGS_DIR",
    "DJANGO_SETTINGS_MODULE",
    "METRICS_ADDR",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in _WORKER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no reproq.yaml/.toml of the repository is found


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["worker", *argv])


def _config(tmp_path: Path, text: str, name: str = "w.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_each_layer_wins_over_the_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, '[worker]\nallowed_task_modules = ["app."]\nlease_seconds = 120\n')
    allowed = ("--allowed-task-modules", "app.")
    assert options_from_args(_args(*allowed)).lease_seconds == 300
    assert options_from_args(_args("--config", str(config))).lease_seconds == 120
    monkeypatch.setenv("REPROQ_LEASE_SECONDS", "150")
    assert options_from_args(_args("--config", str(config))).lease_seconds == 150
    flagged = _args("--config", str(config), "--lease-seconds", "200")
    assert options_from_args(flagged).lease_seconds == 200
    settings, _ = worker_settings(flagged)
    assert settings.source_of("worker.lease_seconds") == "flag:--lease-seconds"


def test_the_environment_applies_without_a_config_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPROQ_LEASE_SECONDS", "150")
    monkeypatch.setenv("REPROQ_CONCURRENCY", "3")
    options = options_from_args(_args("--allowed-task-modules", "app."))
    assert (options.lease_seconds, options.concurrency) == (150, 3)
    assert (
        options_from_args(_args("--allowed-task-modules", "app.", "--concurrency", "4")).concurrency
        == 4
    )


def test_the_go_workers_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_TASK_MODULES", "myapp.tasks., other.")
    monkeypatch.setenv("QUEUE_NAMES", "high,default")
    monkeypatch.setenv("PRIORITY_AGING_FACTOR", "5")
    monkeypatch.setenv("WORKER_ID", "web-1")
    options = options_from_args(_args())
    assert options.allowed_task_modules == ("myapp.tasks.", "other.")
    assert options.queues == ("high", "default")
    assert options.priority_aging_factor == 5
    assert options.worker_id == "web-1"
    # reproq's own names win over the Go worker's where both are set.
    monkeypatch.setenv("REPROQ_ALLOWED_TASK_MODULES", "mine.")
    assert options_from_args(_args()).allowed_task_modules == ("mine.",)


def test_empty_flags_count_as_not_given(tmp_path: Path) -> None:
    # reproq-django passes a flag with an empty value when it was given empty.
    config = _config(tmp_path, '[worker]\nallowed_task_modules = ["app."]\nqueues = ["q"]\n')
    options = options_from_args(
        _args("--config", str(config), "--queues", "", "--allowed-task-modules", "")
    )
    assert (options.queues, options.allowed_task_modules) == (("q",), ("app.",))


def test_a_thread_pool_is_the_default_for_a_plain_python_project() -> None:
    settings, pool = worker_settings(_args("--allowed-task-modules", "app."))
    assert pool.executor is ExecutorKind.THREAD
    assert settings.source_of("pools.default.executor") == "default"


def _django_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "reproq_django"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "mysite.settings")


def test_a_django_project_runs_tasks_through_reproq_django_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _django_project(tmp_path, monkeypatch)
    settings, pool = worker_settings(_args("--allowed-task-modules", "myapp."))
    assert pool.executor is ExecutorKind.SUBPROCESS
    assert pool.options == SubprocessOptions(python=sys.executable, module="reproq_django.executor")
    assert settings.source_of("pools.default.executor") == "env:DJANGO_SETTINGS_MODULE"
    options = options_from_args(_args("--allowed-task-modules", "myapp."))
    assert options.executor == "subprocess"
    assert options.executor_options["module"] == "reproq_django.executor"
    assert options.executor_options["python"] == sys.executable


def test_an_explicit_executor_wins_over_the_django_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _django_project(tmp_path, monkeypatch)
    _, pool = worker_settings(_args("--allowed-task-modules", "m.", "--executor", "thread"))
    assert pool.executor is ExecutorKind.THREAD


def test_django_settings_without_reproq_django_keep_the_thread_executor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "mysite.settings")
    _, pool = worker_settings(_args("--allowed-task-modules", "m."))
    assert pool.executor is ExecutorKind.THREAD


def test_payload_mode_means_the_subprocess_contract() -> None:
    settings, pool = worker_settings(
        _args("--allowed-task-modules", "m.", "--payload-mode", "file")
    )
    assert pool.executor is ExecutorKind.SUBPROCESS
    assert isinstance(pool.options, SubprocessOptions)
    assert pool.options.payload_mode == "file"
    assert settings.source_of("pools.default.executor") == "flag:--payload-mode"


def test_every_flag_of_reproq_djangos_worker_command_is_accepted() -> None:
    # The flags manage.py reproq worker may pass (reproq-django e376e7a, 0.1.529).
    args = _args(
        "--config",
        "reproq.yaml",
        "--dsn",
        "postgresql://u@h/db",
        "--concurrency",
        "10",
        "--queues",
        "default",
        "--allowed-task-modules",
        "myapp.",
        "--logs-dir",
        "logs",
        "--payload-mode",
        "stdin",
        "--metrics-port",
        "9100",
        "--metrics-addr",
        "127.0.0.1:9100",
        "--metrics-auth-token",
        "t",
        "--metrics-allow-cidrs",
        "127.0.0.1/32",
        "--metrics-tls-cert",
        "c.pem",
        "--metrics-tls-key",
        "k.pem",
        "--metrics-tls-client-ca",
        "ca.pem",
        "--metrics-auth-limit",
        "30",
        "--metrics-auth-window",
        "1m",
        "--metrics-auth-max-entries",
        "1000",
        "--process-role",
        "worker",
    )
    assert args.payload_mode == "stdin" and args.metrics_port == "9100"


def test_version_is_printed_both_ways(capsys: pytest.CaptureFixture[str]) -> None:
    import reproq

    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"reproq {reproq.__version__}"
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"reproq {reproq.__version__}"
