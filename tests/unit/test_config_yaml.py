"""YAML config files: the same validated settings and file:line:key errors as TOML."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from reproq.config import ExecutorKind, SubprocessOptions, check_file, load_settings
from reproq.errors import ConfigError


def _write(tmp_path: Path, text: str, name: str = "reproq.yaml") -> Path:
    path = tmp_path / name
    path.write_text(dedent(text).lstrip("\n"))
    return path


def _problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    return [str(p) for p in check_file(path, env=env or {})]


def test_a_yaml_file_loads_into_the_same_settings_as_toml(tmp_path: Path) -> None:
    yaml_path = _write(
        tmp_path,
        """
        database:
          dsn: postgresql://u@h/db
        worker:
          allowed_task_modules: ["app.tasks."]
          lease_seconds: 2m
        pools:
          - name: fast
            queues: [a, b]
            concurrency: 4
          - name: cpu
            queues: [cpu]
            executor: process
            options:
              max_tasks_per_child: 10
        schedules:
          - name: nightly
            cron: "0 2 * * *"
            task: app.tasks.report
            kwargs: {full: true}
        """,
    )
    toml_path = _write(
        tmp_path,
        """
        [database]
        dsn = "postgresql://u@h/db"
        [worker]
        allowed_task_modules = ["app.tasks."]
        lease_seconds = "2m"
        [[pools]]
        name = "fast"
        queues = ["a", "b"]
        concurrency = 4
        [[pools]]
        name = "cpu"
        queues = ["cpu"]
        executor = "process"
        [pools.options]
        max_tasks_per_child = 10
        [[schedules]]
        name = "nightly"
        cron = "0 2 * * *"
        task = "app.tasks.report"
        kwargs = { full = true }
        """,
        name="reproq.toml",
    )
    from_yaml = load_settings(yaml_path, env={})
    from_toml = load_settings(toml_path, env={})
    assert from_yaml.pools == from_toml.pools
    assert from_yaml.worker == from_toml.worker
    assert from_yaml.schedules == from_toml.schedules
    assert from_yaml.database.dsn == from_toml.database.dsn
    assert from_yaml.source_of("worker.lease_seconds") == f"file:{yaml_path}"


def test_errors_name_the_file_line_and_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        worker:
          lease_second: 30
          heartbeat_seconds: soon
        pools:
          - name: a
            queues: [q]
            concurrency: 0
        """,
    )
    assert _problems(path) == [
        f"{path}:2: worker.lease_second: unknown key; did you mean 'lease_seconds'?",
        f"{path}:3: worker.heartbeat_seconds: invalid duration 'soon'"
        + _problems(path)[1].split("invalid duration 'soon'", 1)[1],
        f"{path}:7: pools[0].concurrency: must be positive, got 0",
    ]


def test_a_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "worker:\n  queues: [a, b\n  concurrency: 3\n")
    (problem,) = check_file(path, env={})
    assert problem.file == str(path)
    assert problem.line == 3
    assert problem.message.startswith("invalid YAML: ")


def test_a_duplicate_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    path = _write(tmp_path, "worker:\n  concurrency: 3\n  concurrency: 4\n")
    assert _problems(path) == [f"{path}:3: worker.concurrency: duplicate key (first at line 2)"]


def test_yaml_values_that_are_not_json_are_refused(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        schedules:
          - name: n
            cron: "* * * * *"
            task: a.b
            args: [2024-01-01]
        """,
    )
    (problem,) = check_file(path, env={})
    assert (problem.line, problem.key) == (5, "schedules[0].args")
    assert "dates and times are not JSON values" in problem.message


def test_the_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, "- a\n- b\n")
    (problem,) = check_file(path, env={})
    assert "expected a mapping of sections" in problem.message
    assert problem.line == 1


def test_an_empty_yaml_file_is_all_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, "# nothing yet\n")
    assert load_settings(path, env={}).pools[0].executor is ExecutorKind.THREAD


def test_interpolation_works_in_yaml_too(tmp_path: Path) -> None:
    path = _write(tmp_path, 'dsn: "${DATABASE_URL}"\n')
    settings = load_settings(path, env={"DATABASE_URL": "postgresql://x/y", "REPROQ_DSN": ""})
    assert settings.database.dsn == "postgresql://x/y"
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert (info.value.line, info.value.key) == (1, "dsn")


def test_go_worker_yaml_keys_map_onto_the_model(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        dsn: "postgres://user:pass@localhost:5432/reproq?sslmode=disable"
        worker:
          dsn: ""
          worker_id: "worker-1"
          process_role: "worker"
          queues: [default, high]
          allowed_task_modules: ["myapp.tasks.", "tasks."]
          concurrency: 10
          poll_min_backoff: "100ms"
          poll_max_backoff: "5s"
          lease_seconds: 300
          heartbeat_seconds: 60
          reclaim_interval_seconds: 60
          python_bin: "python3"
          executor_module: "reproq_django.executor"
          payload_mode: "stdin"
          max_payload_bytes: 1048576
          max_stdout_bytes: 1048576
          max_stderr_bytes: 2097152
          logs_dir: ""
          exec_timeout: "1h"
          max_attempts_default: 3
          shutdown_timeout: "30s"
          priority_aging_factor: 60
        beat:
          dsn: ""
          interval: "30s"
        metrics:
          addr: "127.0.0.1:9090"
          port: 0
          auth_token: ""
          allow_cidrs: ["127.0.0.1/32"]
          tls_cert: ""
          tls_key: ""
          tls_client_ca: ""
        """,
    )
    settings = load_settings(path, env={})
    (pool,) = settings.pools
    assert pool.queues == ("default", "high") and pool.concurrency == 10
    assert pool.executor is ExecutorKind.SUBPROCESS
    assert pool.options == SubprocessOptions(python="python3", module="reproq_django.executor")
    assert pool.timeout_seconds == 3600
    assert settings.worker.worker_id == "worker-1"
    assert settings.worker.max_output_bytes == 2097152
    assert settings.worker.poll_interval == 5
    assert settings.beat.tick == 30
    assert settings.metrics.enabled and settings.metrics.addr == "127.0.0.1:9090"
    assert settings.metrics.allowed_cidrs == ("127.0.0.1/32",)
    assert settings.database.dsn is not None and settings.database.dsn.startswith("postgres://")


def test_an_unknown_go_shaped_key_still_names_file_line_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "worker:\n  concurrency: 3\n  max_attempts_defualt: 3\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:3: worker.max_attempts_defualt: unknown key")
    assert "did you mean 'max_attempts_default'?" in problem
