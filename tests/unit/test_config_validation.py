"""Every bad-config case is reported with its file, dotted key path and line."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from reproq.config import check_file, load_settings
from reproq.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "reproq.toml") -> Path:
    path = tmp_path / name
    path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def only_problem(path: Path, env: dict[str, str] | None = None) -> ConfigError:
    problems = check_file(path, env=env or {})
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def assert_located(problem: ConfigError, path: Path, key: str, line: int) -> None:
    assert problem.file == str(path)
    assert problem.key == key
    assert problem.line == line
    assert str(problem).startswith(f"{path}:{line}: {key}: ")


def test_unknown_key_suggests_the_nearest_known_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [worker]
        concurrency = 4
        lease_second = 30
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "worker.lease_second", 3)
    assert "unknown key; did you mean 'lease_seconds'?" in str(problem)


def test_unknown_table_suggests_the_nearest_table(tmp_path: Path) -> None:
    path = write(tmp_path, "# settings\n[wroker]\nlease_seconds = 30\n")
    problem = only_problem(path)
    assert_located(problem, path, "wroker", 2)
    assert problem.message == "unknown table; did you mean 'worker'?"


def test_unknown_key_inside_a_named_queue_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [queues.emails]
        paused = false
        rat = 5
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "queues.emails.rat", 3)
    assert "did you mean 'rate'?" in problem.message


def test_wrong_type_names_expected_and_found_types(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [database]
        pool_size = "ten"
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "database.pool_size", 2)
    assert problem.message == "expected an integer, got string 'ten'"


def test_a_table_where_a_value_belongs_is_a_type_error(tmp_path: Path) -> None:
    path = write(tmp_path, 'worker = "fast"\n')
    problem = only_problem(path)
    assert_located(problem, path, "worker", 1)
    assert "expected a table ([worker])" in problem.message


def test_bad_duration_is_reported_with_the_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [worker]
        lease_seconds = "5 parsecs"
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "worker.lease_seconds", 2)
    assert "invalid duration '5 parsecs'" in problem.message


def test_zero_lease_is_not_a_positive_duration(tmp_path: Path) -> None:
    path = write(tmp_path, "[worker]\nlease_seconds = 0\n")
    problem = only_problem(path)
    assert_located(problem, path, "worker.lease_seconds", 2)
    assert "positive" in problem.message


def test_bad_cron_expression_is_located_in_its_schedule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[schedules]]
        name = "ok"
        cron = "* * * * *"
        task = "app.tasks.ok"

        [[schedules]]
        name = "bad"
        cron = "61 * * * *"
        task = "app.tasks.bad"
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "schedules[1].cron", 8)
    assert "61 * * * *" in problem.message


def test_cron_with_the_wrong_number_of_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[schedules]]
        name = "six"
        cron = "0 * * * * *"
        task = "app.tasks.six"
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "schedules[0].cron", 3)
    assert "6 fields; expected 5" in problem.message


def test_cron_that_never_fires_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[schedules]]
        name = "never"
        cron = "0 0 31 2 *"
        task = "app.tasks.never"
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "schedules[0].cron", 3)
    assert "never" in problem.message


def test_unknown_timezone_suggests_a_real_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[schedules]]
        name = "report"
        cron = "0 9 * * *"
        timezone = "Europe/Pari"
        task = "app.tasks.report"
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "schedules[0].timezone", 4)
    assert "unknown timezone 'Europe/Pari'; did you mean 'Europe/Paris'?" in problem.message


def test_unknown_zone_in_a_cron_tz_prefix(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[schedules]]
        name = "report"
        cron = "CRON_TZ=Mars/Olympus 0 9 * * *"
        task = "app.tasks.report"
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "schedules[0].cron", 3)
    assert "unknown timezone 'Mars/Olympus'" in problem.message


def test_cron_tz_prefix_conflicting_with_timezone(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[schedules]]
        name = "report"
        cron = "CRON_TZ=Europe/Berlin 0 9 * * *"
        timezone = "Europe/Paris"
        task = "app.tasks.report"
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "schedules[0].timezone", 4)
    assert "conflicts with CRON_TZ=Europe/Berlin" in problem.message


def test_duplicate_schedule_name_points_at_the_second_and_names_the_first(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[schedules]]
        name = "nightly"
        cron = "0 2 * * *"
        task = "app.tasks.a"

        [[schedules]]
        name = "nightly"
        cron = "0 3 * * *"
        task = "app.tasks.b"
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "schedules[1].name", 7)
    assert problem.message == "duplicate schedule name 'nightly' (first at line 2)"


def test_schedule_without_a_task_is_located_at_its_header(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [beat]
        enabled = true

        [[schedules]]
        name = "orphan"
        cron = "0 2 * * *"
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "schedules[0]", 4)
    assert problem.message == "schedule has no task"


def test_schedule_args_cannot_hold_toml_dates(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[schedules]]
        name = "dated"
        cron = "0 2 * * *"
        task = "app.tasks.a"
        args = [1979-05-27]
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "schedules[0].args", 5)
    assert "not JSON" in problem.message


def test_pool_without_queues_is_an_error_at_its_header(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[pools]]
        name = "default"
        queues = ["default"]

        [[pools]]
        name = "idle"
        concurrency = 2
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "pools[1]", 5)
    assert "pool has no queues" in problem.message


def test_pool_with_an_empty_queue_list_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[pools]]
        name = "idle"
        queues = []
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "pools[0].queues", 3)
    assert "at least one queue" in problem.message


def test_duplicate_pool_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[pools]]
        name = "a"
        queues = ["x"]
        [[pools]]
        name = "a"
        queues = ["y"]
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "pools[1].name", 5)
    assert "duplicate pool name 'a' (first at line 2)" in problem.message


def test_bad_executor_name_suggests_a_real_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[pools]]
        name = "a"
        queues = ["x"]
        executor = "threads"
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "pools[0].executor", 4)
    assert "expected one of thread, process, subprocess, mock; did you mean 'thread'?" in (
        problem.message
    )


@pytest.mark.parametrize("value", ["0", "-3"])
def test_non_positive_concurrency_is_refused(tmp_path: Path, value: str) -> None:
    path = write(
        tmp_path,
        f"""
        [[pools]]
        name = "a"
        queues = ["x"]

        [[pools]]
        name = "b"
        queues = ["y"]
        concurrency = {value}
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "pools[1].concurrency", 8)
    assert "must be positive" in problem.message


def test_unknown_executor_option_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[pools]]
        name = "cpu"
        queues = ["cpu"]
        executor = "process"

        [pools.options]
        max_task_per_child = 10
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "pools[0].options.max_task_per_child", 7)
    assert "unknown option for the process executor; did you mean 'max_tasks_per_child'?" in (
        problem.message
    )


def test_bad_cidr_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [metrics]
        enabled = true
        allowed_cidrs = ["10.0.0.0/8", "10.0.0.300/32"]
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "metrics.allowed_cidrs", 3)
    assert "invalid CIDR '10.0.0.300/32'" in problem.message


def test_bad_metrics_address(tmp_path: Path) -> None:
    path = write(tmp_path, '[metrics]\naddr = "localhost"\n')
    problem = only_problem(path)
    assert_located(problem, path, "metrics.addr", 2)
    assert "expected host:port" in problem.message


def test_rate_limit_key_must_have_a_known_shape(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [limits]
        global = { rate = 100, burst = 100 }
        "tsk:app.send" = { rate = 1 }
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, 'limits."tsk:app.send"', 3)
    assert "expected 'global', 'task:<module.function>' or 'queue:<name>'" in problem.message


def test_error_inside_an_inline_table_points_at_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [limits]
        "queue:emails" = { rate = 5 }
        "task:app.send" = { rate = "fast", burst = 2 }
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, 'limits."task:app.send".rate', 3)
    assert "expected a rate" in problem.message


def test_queue_rate_and_a_queue_limit_for_the_same_queue_conflict(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [queues.emails]
        rate = 5

        [limits]
        "queue:emails" = 10
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "queues.emails.rate", 2)
    assert 'conflicts with limits."queue:emails" (line 5)' in problem.message


def test_heartbeat_must_be_shorter_than_the_lease(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [worker]
        lease_seconds = "30s"
        heartbeat_seconds = "1m"
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "worker.heartbeat_seconds", 3)
    assert "must be shorter than lease_seconds" in problem.message


def test_two_different_dsns_conflict(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        dsn = "postgresql://a/one"

        [database]
        dsn = "postgresql://a/two"
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "database.dsn", 4)
    assert "conflicts with dsn (line 1)" in problem.message


def test_missing_environment_variable_names_key_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [database]
        pool_size = 3
        dsn = "${PROD_DB_URL}"
        """,
    )
    problem = only_problem(path, env={})
    assert_located(problem, path, "database.dsn", 3)
    assert "environment variable PROD_DB_URL is not set" in problem.message


def test_missing_variable_in_a_typed_value_is_reported_once(tmp_path: Path) -> None:
    path = write(tmp_path, '[worker]\nlease_seconds = "${LEASE}"\n')
    problem = only_problem(path, env={})
    assert_located(problem, path, "worker.lease_seconds", 2)
    assert "LEASE is not set" in problem.message


def test_toml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [worker]
        lease_seconds = 30
        concurrency = = 4
        """,
    )
    problem = only_problem(path)
    assert problem.file == str(path)
    assert problem.line == 3
    assert problem.message.startswith("invalid TOML: ")
    assert "(at line" not in problem.message


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    problem = only_problem(missing)
    assert problem.file == str(missing)
    assert "cannot read config file" in problem.message


def test_a_tls_certificate_needs_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[metrics]\naddr = "127.0.0.1:9090"\ntls_cert = "/etc/cert.pem"\n')
    problem = only_problem(path)
    assert_located(problem, path, "metrics.tls_cert", 3)
    assert "needs metrics.tls_key" in problem.message


def test_a_client_ca_needs_a_certificate(tmp_path: Path) -> None:
    path = write(tmp_path, '[metrics]\naddr = "127.0.0.1:9090"\ntls_client_ca = "/etc/ca.pem"\n')
    problem = only_problem(path)
    assert_located(problem, path, "metrics.tls_client_ca", 3)
    assert "needs metrics.tls_cert" in problem.message


def test_failed_auth_limits_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "[metrics]\nauth_limit = 0\n")
    assert_located(only_problem(path), path, "metrics.auth_limit", 2)
    path = write(tmp_path, '[metrics]\nauth_window = "soon"\n')
    assert_located(only_problem(path), path, "metrics.auth_window", 2)
    path = write(tmp_path, "[metrics]\nauth_max_entries = 10000000\n")
    problem = only_problem(path)
    assert_located(problem, path, "metrics.auth_max_entries", 2)
    assert "at most 1000000" in problem.message


def test_pool_shorthand_in_worker_is_refused_next_to_pools(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [worker]
        concurrency = 4

        [[pools]]
        name = "a"
        queues = ["x"]
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "worker.concurrency", 2)
    assert "only valid without [[pools]]" in problem.message


def test_check_reports_every_problem_at_once_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [worker]
        lease_seconds = "forever"
        heartbeat_secs = 10

        [[pools]]
        name = "a"
        concurrency = 0
        queues = []

        [[schedules]]
        name = "x"
        cron = "* * *"
        timezone = "Nowhere/City"
        task = "app.tasks.x"

        [metrics]
        allowed_cidrs = ["not-a-net"]
        """,
    )
    problems = check_file(path, env={})
    located = [(p.key, p.line) for p in problems]
    assert located == [
        ("worker.lease_seconds", 2),
        ("worker.heartbeat_secs", 3),
        ("pools[0].concurrency", 7),
        ("pools[0].queues", 8),
        ("schedules[0].cron", 12),
        ("schedules[0].timezone", 13),
        ("metrics.allowed_cidrs", 17),
    ]
    assert all(p.file == str(path) for p in problems)


def test_load_settings_raises_the_first_problem_and_counts_the_rest(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [worker]
        lease_seconds = "forever"
        shutdown_timeout = "never"
        poll_interval = "often"
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert info.value.key == "worker.lease_seconds"
    assert info.value.line == 2
    assert f"(and 2 more problems; run `reproq config check {path}`)" in str(info.value)


def test_a_valid_file_has_no_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [worker]
        lease_seconds = "2m"
        [[pools]]
        name = "a"
        queues = ["x"]
        """,
    )
    assert check_file(path, env={}) == []


def test_a_per_queue_concurrency_cap_is_refused_not_ignored(tmp_path: Path) -> None:
    path = tmp_path / "q.toml"
    path.write_text("[queues.cpu]\nconcurrency = 2\n")
    problems = check_file(path, env={})
    assert [(p.key, p.line) for p in problems] == [("queues.cpu.concurrency", 2)]
    assert "concurrency_key" in problems[0].message


def test_pool_with_more_connections_than_slots_is_an_error_at_the_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[pools]]
        name = "fast"
        queues = ["default"]
        concurrency = 2
        connections = 3
        """,
    )
    problem = only_problem(path)
    assert_located(problem, path, "pools[0].connections", 5)
    assert "must not exceed concurrency (2)" in problem.message
