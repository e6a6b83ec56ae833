"""Worker settings: validation, defaults and how CLI flags map onto them (no database)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from reproq.cli import build_parser, main
from reproq.cli.worker import options_from_args
from reproq.engine.worker import WorkerOptions, default_worker_id
from reproq.errors import ConfigError, UsageError


def test_the_allow_list_must_be_given_explicitly() -> None:
    with pytest.raises(ConfigError) as info:
        WorkerOptions().validate()
    assert info.value.key == "allowed_task_modules"
    WorkerOptions(allowed_task_modules=("*",)).validate()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"queues": ()}, "queues"),
        ({"heartbeat_seconds": 300.0, "lease_seconds": 300.0}, "heartbeat_seconds"),
        ({"max_payload_bytes": 0}, "max_payload_bytes"),
        ({"priority_aging_factor": -1.0}, "priority_aging_factor"),
    ],
)
def test_bad_settings_name_the_setting(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        WorkerOptions(allowed_task_modules=("*",), **overrides).validate()  # type: ignore[arg-type]
    assert info.value.key == key


def test_defaults_follow_the_seed() -> None:
    options = WorkerOptions(allowed_task_modules=("*",))
    assert options.concurrency == 10 and options.lease_seconds == 300
    assert options.heartbeat_seconds == 60 and options.reclaim_interval_seconds == 60
    assert options.priority_aging_factor == 60 and options.shutdown_timeout == 30
    assert options.max_payload_bytes == options.max_output_bytes == 1024 * 1024


def test_the_worker_id_comes_from_worker_id_env_else_host_and_pid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKER_ID", "from-env")
    assert default_worker_id() == "from-env"
    monkeypatch.delenv("WORKER_ID")
    assert default_worker_id().endswith(f"-{__import__('os').getpid()}")


def test_lists_are_stored_as_tuples() -> None:
    options = WorkerOptions(queues=["a", "b"], allowed_task_modules=["x."])  # type: ignore[arg-type]
    assert options.queues == ("a", "b") and options.allowed_task_modules == ("x.",)


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["worker", *argv])


def test_the_cli_requires_the_allow_list(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REPROQ_ALLOWED_TASK_MODULES", raising=False)
    assert main(["worker", "--dsn", "postgresql://nowhere/db"]) == 2
    assert "--allowed-task-modules is required" in capsys.readouterr().err


def test_cli_durations_accept_units() -> None:
    args = _args(
        "--allowed-task-modules",
        "app.",
        "--lease-seconds",
        "5m",
        "--shutdown-timeout",
        "30s",
        "--heartbeat-seconds",
        "90",
    )
    options = options_from_args(args)
    assert (options.lease_seconds, options.shutdown_timeout, options.heartbeat_seconds) == (
        300,
        30,
        90,
    )


def _executor_options(*argv: str) -> dict[str, object]:
    return dict(options_from_args(_args("--allowed-task-modules", "app.", *argv)).executor_options)


def test_executor_flags_become_executor_options() -> None:
    assert _executor_options() == {"max_output_bytes": 1024 * 1024}  # the thread executor's cap
    assert _executor_options("--max-output-bytes", "4096") == {"max_output_bytes": 4096}
    mock = _executor_options("--executor", "mock", "--mock-duration", "0.1-0.2")
    assert mock == {"duration": (0.1, 0.2), "failure_rate": 0.0}
    seeded = _executor_options("--executor", "mock", "--mock-duration", "1", "--mock-seed", "7")
    assert seeded == {"duration": 1.0, "failure_rate": 0.0, "seed": 7}
    sub = _executor_options(
        "--executor", "subprocess", "--python", "/venv/bin/python", "--executor-module", "m"
    )
    assert sub["python"] == "/venv/bin/python" and sub["module"] == "m"
    proc = _executor_options(
        "--executor", "process", "--concurrency", "3", "--max-tasks-per-child", "50"
    )
    assert proc["processes"] == 3 and proc["max_tasks_per_child"] == 50


def test_a_config_pool_gives_the_worker_its_settings_and_flags_override_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPROQ_CONFIG", raising=False)
    config = tmp_path / "w.toml"
    config.write_text(
        '[database]\ndsn = "postgresql://nowhere/db"\n'
        '[worker]\nworker_id = "box"\nallowed_task_modules = ["app.tasks."]\nlease_seconds = 120\n'
        '[[pools]]\nname = "a"\nqueues = ["q1"]\nconcurrency = 3\n'
        '[[pools]]\nname = "b"\nqueues = ["q2", "q3"]\nconcurrency = 7\ntimeout_seconds = 9\n'
    )
    first = options_from_args(_args("--config", str(config)))
    assert (first.queues, first.concurrency, first.lease_seconds) == (("q1",), 3, 120)
    assert first.allowed_task_modules == ("app.tasks.",)
    assert first.worker_id == "box-a"
    second = options_from_args(
        _args("--config", str(config), "--pool", "b", "--concurrency", "2", "--worker-id", "w9")
    )
    assert (second.queues, second.concurrency, second.worker_id) == (("q2", "q3"), 2, "w9")
    assert second.max_timeout_seconds == 9


def test_an_unknown_pool_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "w.toml"
    config.write_text('[worker]\nallowed_task_modules = ["app."]\n')
    with pytest.raises(UsageError, match=r"--pool nope: .* has no such pool"):
        options_from_args(_args("--config", str(config), "--pool", "nope"))


def test_connections_flag_and_pool_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPROQ_CONFIG", raising=False)
    flags = options_from_args(_args("--allowed-task-modules", "app.", "--concurrency", "400"))
    assert flags.connections == 1
    two = _args("--allowed-task-modules", "app.", "--concurrency", "400", "--connections", "2")
    assert options_from_args(two).connections == 2
    config = tmp_path / "w.toml"
    config.write_text(
        '[worker]\nallowed_task_modules = ["app."]\n'
        '[[pools]]\nname = "fast"\nqueues = ["q"]\nconcurrency = 800\nconnections = 2\n'
    )
    pool = options_from_args(_args("--config", str(config)))
    assert (pool.concurrency, pool.connections) == (800, 2)
    assert options_from_args(_args("--config", str(config), "--connections", "4")).connections == 4


def test_a_thread_pool_in_a_config_file_caps_task_output_at_max_output_bytes(
    tmp_path: Path,
) -> None:
    from reproq.config import load_settings
    from reproq.runtime.pools import executor_options

    config = tmp_path / "t.toml"
    config.write_text(
        "[worker]\nmax_output_bytes = 2048\n\n"
        '[[pools]]\nname = "fast"\nexecutor = "thread"\nqueues = ["default"]\n'
    )
    settings = load_settings(config, env={})
    assert executor_options(settings, settings.pools[0]) == {"max_output_bytes": 2048}
