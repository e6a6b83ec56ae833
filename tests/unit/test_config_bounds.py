"""Values the runtime cannot run are refused where they are written (file, env, flag)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reproq.cli import main
from reproq.config import check_file, load_settings
from reproq.engine.bounds import (
    MAX_BYTES,
    MAX_CONCURRENCY,
    MAX_CONNECTIONS,
    MAX_DURATION,
    MAX_LEASE_SECONDS,
    MAX_POOL_SIZE,
)
from reproq.engine.worker import WorkerOptions
from reproq.errors import ConfigError


def _problems(tmp_path: Path, text: str) -> list[tuple[int | None, str | None, str]]:
    path = tmp_path / "b.toml"
    path.write_text(text)
    return [(p.line, p.key, p.message) for p in check_file(path, env={})]


@pytest.mark.parametrize(
    ("text", "line", "key", "limit"),
    [
        (
            "[[pools]]\nname='a'\nqueues=['q']\nconcurrency = 10000000000\n",
            4,
            "pools[0].concurrency",
            MAX_CONCURRENCY,
        ),
        ("[worker]\nconcurrency = 100000\n", 2, "worker.concurrency", MAX_CONCURRENCY),
        (
            "[worker]\nconcurrency = 100\nconnections = 100000\n",
            3,
            "worker.connections",
            MAX_CONNECTIONS,
        ),
        ("[worker]\nlease_seconds = 1e13\n", 2, "worker.lease_seconds", MAX_LEASE_SECONDS),
        ("[database]\npool_size = 9223372036854775807\n", 2, "database.pool_size", MAX_POOL_SIZE),
        ("[worker]\nshutdown_timeout = 1e12\n", 2, "worker.shutdown_timeout", MAX_DURATION),
        ("[worker]\nmax_payload_bytes = 99999999999\n", 2, "worker.max_payload_bytes", MAX_BYTES),
        ("[beat]\ntick = '999999d'\n", 2, "beat.tick", MAX_DURATION),
    ],
)
def test_config_check_names_file_line_and_key_of_an_unrunnable_value(
    tmp_path: Path, text: str, line: int, key: str, limit: float
) -> None:
    problems = _problems(tmp_path, text)
    assert [(p[0], p[1]) for p in problems] == [(line, key)]
    assert f"must be at most {limit}" in problems[0][2]


def test_schedule_integers_fit_the_database_columns(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        "[[schedules]]\nname='n'\ncron='* * * * *'\ntask='a.b'\npriority = 3000000000\n"
        "max_attempts = 3000000000\n",
    )
    assert [(p[0], p[1]) for p in problems] == [
        (5, "schedules[0].priority"),
        (6, "schedules[0].max_attempts"),
    ]


def test_an_environment_value_out_of_bounds_names_its_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"REPROQ_CONCURRENCY": "100000"})
    assert info.value.key == "pools.default.concurrency"
    assert "$REPROQ_CONCURRENCY" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("concurrency", MAX_CONCURRENCY + 1),
        ("connections", MAX_CONNECTIONS + 1),
        ("lease_seconds", MAX_LEASE_SECONDS + 1),
        ("shutdown_timeout", MAX_DURATION + 1),
        ("max_payload_bytes", MAX_BYTES + 1),
        ("poll_interval", MAX_DURATION + 1),
    ],
)
def test_worker_options_refuse_what_the_worker_cannot_run(field: str, value: float) -> None:
    options = {"allowed_task_modules": ("*",), field: value}
    if field == "connections":
        options["concurrency"] = MAX_CONCURRENCY
    with pytest.raises(ConfigError) as info:
        WorkerOptions(**options).validate()  # type: ignore[arg-type]
    assert info.value.key == field


def test_the_bounds_themselves_are_accepted() -> None:
    WorkerOptions(
        allowed_task_modules=("*",),
        concurrency=MAX_CONCURRENCY,
        connections=MAX_CONNECTIONS,
        lease_seconds=MAX_LEASE_SECONDS,
    ).validate()


def test_the_worker_flag_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "worker",
            "--dsn",
            "postgresql://nowhere/db",
            "--allowed-task-modules",
            "app.",
            "--concurrency",
            "100000",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"reproq: error: pools.default.concurrency: must be at most {MAX_CONCURRENCY}, "
        "got 100000 (from --concurrency)\n"
    )
