"""Loading settings: defaults, precedence, interpolation, upstream's flat shape, show."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from textwrap import dedent

import pytest

from reproq.config import (
    ENV_VARS,
    ExecutorKind,
    MisfirePolicy,
    PayloadMode,
    PoolSettings,
    ProcessOptions,
    RateLimitSettings,
    Settings,
    SubprocessOptions,
    ThreadOptions,
    check_file,
    default_data_dir,
    load_settings,
    show_settings,
    starter_config,
)
from reproq.db import DSN_ENV_VARS
from reproq.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "reproq.toml") -> Path:
    path = tmp_path / name
    path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# -- defaults -------------------------------------------------------------------------


def test_without_a_file_every_value_is_the_default() -> None:
    settings = load_settings(None, env={})
    assert dataclasses.replace(settings, sources={}) == Settings(sources={})
    assert settings.database.dsn is None
    assert settings.database.embedded_data_dir == default_data_dir()
    assert settings.worker.lease_seconds == 300
    assert settings.worker.max_payload_bytes == 1024 * 1024
    assert settings.pools == (PoolSettings(name="default", queues=("default",), concurrency=10),)
    assert settings.pools[0].executor is ExecutorKind.THREAD
    assert settings.beat.enabled is True
    assert settings.metrics.enabled is False
    assert settings.source_of("worker.lease_seconds") == "default"
    assert settings.source_file is None


def test_settings_are_frozen() -> None:
    settings = load_settings(None, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.worker.lease_seconds = 1  # type: ignore[misc]


def test_secrets_stay_out_of_repr() -> None:
    settings = load_settings(
        None,
        env={"REPROQ_DSN": "postgresql://u:hunter2@h/db", "REPROQ_METRICS_AUTH_TOKEN": "tok3n"},
    )
    assert "hunter2" not in repr(settings)
    assert "tok3n" not in repr(settings)


# -- precedence -----------------------------------------------------------------------


def test_file_beats_defaults_env_beats_file_flags_beat_env(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [worker]
        lease_seconds = "2m"
        heartbeat_seconds = 20
        shutdown_timeout = "45s"
        """,
    )
    env = {"REPROQ_HEARTBEAT_SECONDS": "15s", "REPROQ_SHUTDOWN_TIMEOUT": "50"}
    settings = load_settings(path, env=env, overrides={"worker.shutdown_timeout": "1m"})
    assert settings.worker.poll_interval == 1.0
    assert settings.worker.lease_seconds == 120
    assert settings.worker.heartbeat_seconds == 15
    assert settings.worker.shutdown_timeout == 60
    assert settings.source_of("worker.poll_interval") == "default"
    assert settings.source_of("worker.lease_seconds") == f"file:{path}"
    assert settings.source_of("worker.heartbeat_seconds") == "env:REPROQ_HEARTBEAT_SECONDS"
    assert settings.source_of("worker.shutdown_timeout") == "flag:--shutdown-timeout"


def test_reproq_dsn_beats_database_url_and_both_beat_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'dsn = "postgresql://file/db"\n')
    assert load_settings(path, env={}).database.dsn == "postgresql://file/db"
    seed = load_settings(path, env={"DATABASE_URL": "postgresql://seed/db"})
    assert seed.database.dsn == "postgresql://seed/db"
    assert seed.source_of("database.dsn") == "env:DATABASE_URL"
    both = {"DATABASE_URL": "postgresql://seed/db", "REPROQ_DSN": "postgresql://reproq/db"}
    assert load_settings(path, env=both).database.dsn == "postgresql://reproq/db"
    flagged = load_settings(path, env=both, overrides={"database.dsn": "postgresql://flag/db"})
    assert flagged.database.dsn == "postgresql://flag/db"
    assert flagged.source_of("database.dsn") == "flag:--dsn"


def test_worker_id_comes_from_the_seed_variable_too() -> None:
    assert load_settings(None, env={"WORKER_ID": "w-7"}).worker.worker_id == "w-7"
    both = {"WORKER_ID": "w-7", "REPROQ_WORKER_ID": "w-8"}
    assert load_settings(None, env=both).worker.worker_id == "w-8"


def test_every_documented_environment_variable_sets_its_key() -> None:
    samples = {
        "database.pool_size": "3",
        "database.embedded_data_dir": "/srv/pg",
        "database.embedded_port": "5544",
        "worker.worker_id": "w1",
        "worker.lease_seconds": "90s",
        "worker.heartbeat_seconds": "10",
        "worker.reclaim_interval_seconds": "5m",
        "worker.priority_aging_factor": "30",
        "worker.allowed_task_modules": "a.tasks., b.tasks.",
        "worker.shutdown_timeout": "1m",
        "worker.logs_dir": "/var/log/x",
        "worker.max_payload_bytes": "2048",
        "worker.max_output_bytes": "4096",
        "worker.poll_interval": "250ms",
        "worker.concurrency": "3",
        "worker.queues": "a,b",
        "worker.executor": "mock",
        "beat.enabled": "false",
        "beat.tick": "2s",
        "metrics.enabled": "yes",
        "metrics.addr": "0.0.0.0:9100",
        "metrics.auth_token": "t",
        "metrics.allowed_cidrs": "10.0.0.0/8,192.168.0.0/16",
        "metrics.tls_cert": "/etc/reproq/cert.pem",
        "metrics.tls_key": "/etc/reproq/key.pem",
        "metrics.tls_client_ca": "/etc/reproq/ca.pem",
        "metrics.auth_limit": "10",
        "metrics.auth_window": "2m",
        "metrics.auth_max_entries": "500",
        "logging.level": "debug",
        "logging.json": "1",
    }
    ignored = {"worker.process_role"}
    assert set(samples) | ignored == set(ENV_VARS.values())
    for name in DSN_ENV_VARS:
        settings = load_settings(None, env={name: "postgresql://x/y"})
        assert settings.source_of("database.dsn") == f"env:{name}"
    # A certificate comes with its key (and a client CA needs both).
    tls = {"metrics.tls_cert": ("METRICS_TLS_CERT", "/c.pem")}
    tls["metrics.tls_key"] = ("METRICS_TLS_KEY", "/k.pem")
    for name, key in ENV_VARS.items():
        if key in ignored:
            warnings = load_settings(None, env={name: "30"}).warnings
            assert warnings == (
                f"{key}: accepted for compatibility and ignored: "
                + warnings[0].split("ignored: ", 1)[1],
            )
            assert warnings[0].endswith(f"(from ${name})")
            continue
        env = {
            companion: value
            for other, (companion, value) in tls.items()
            if key.startswith("metrics.tls_") and other != key
        }
        env[name] = samples[key]
        settings = load_settings(None, env=env)
        if key.startswith("worker.") and key.split(".")[1] in ("concurrency", "queues", "executor"):
            assert settings.source_of(f"pools.default.{key.split('.')[1]}") == f"env:{name}"
        else:
            assert settings.source_of(key) == f"env:{name}", name
    settings = load_settings(None, env={"REPROQ_ALLOWED_TASK_MODULES": "a.tasks., b.tasks."})
    assert settings.worker.allowed_task_modules == ("a.tasks.", "b.tasks.")
    assert load_settings(None, env={"REPROQ_LOG_LEVEL": "debug"}).logging.level == "DEBUG"
    assert load_settings(None, env={"REPROQ_BEAT_ENABLED": "off"}).beat.enabled is False


def test_empty_environment_variables_count_as_unset(tmp_path: Path) -> None:
    path = write(tmp_path, '[worker]\nworker_id = "from-file"\n')
    settings = load_settings(path, env={"REPROQ_WORKER_ID": "", "DATABASE_URL": ""})
    assert settings.worker.worker_id == "from-file"
    assert settings.database.dsn is None


def test_bad_environment_value_names_the_variable_and_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"REPROQ_LEASE_SECONDS": "a while"})
    assert info.value.key == "worker.lease_seconds"
    assert info.value.file is None
    assert "invalid duration 'a while'" in str(info.value)
    assert "(from $REPROQ_LEASE_SECONDS)" in str(info.value)


def test_none_overrides_are_ignored_so_unset_flags_pass_through(tmp_path: Path) -> None:
    path = write(tmp_path, "[worker]\nlease_seconds = 120\n")
    settings = load_settings(path, env={}, overrides={"worker.lease_seconds": None})
    assert settings.worker.lease_seconds == 120


def test_bad_override_names_the_flag() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={}, overrides={"worker.max_payload_bytes": 0})
    assert info.value.key == "worker.max_payload_bytes"
    assert "(from --max-payload-bytes)" in str(info.value)


def test_unknown_override_key_suggests_the_nearest() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={}, overrides={"worker.lease_second": 5})
    assert info.value.key == "worker.lease_second"
    assert "did you mean 'worker.lease_seconds'?" in str(info.value)


def test_concurrency_and_queue_flags_shape_the_default_pool() -> None:
    settings = load_settings(
        None,
        env={},
        overrides={
            "worker.concurrency": 20,
            "worker.queues": ("default", "high"),
            "worker.executor": "process",
        },
    )
    (pool,) = settings.pools
    assert pool.name == "default"
    assert pool.concurrency == 20
    assert pool.queues == ("default", "high")
    assert pool.executor is ExecutorKind.PROCESS
    assert pool.options == ProcessOptions()
    assert settings.source_of("pools.default.concurrency") == "flag:--concurrency"


def test_flag_values_given_as_text_are_parsed() -> None:
    settings = load_settings(
        None, env={}, overrides={"worker.concurrency": "12", "worker.queues": "a, b"}
    )
    assert (settings.pools[0].concurrency, settings.pools[0].queues) == (12, ("a", "b"))


def test_concurrency_flag_applies_to_a_config_with_one_pool(tmp_path: Path) -> None:
    path = write(tmp_path, '[[pools]]\nname = "only"\nqueues = ["q"]\nconcurrency = 2\n')
    settings = load_settings(path, env={"REPROQ_CONCURRENCY": "7"})
    assert settings.pool("only").concurrency == 7


def test_concurrency_variable_is_refused_for_a_config_with_several_pools(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[pools]]\nname = "a"\nqueues = ["a"]\n[[pools]]\nname = "b"\nqueues = ["b"]\n',
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={"REPROQ_CONCURRENCY": "7"})
    assert "the config has 2 pools" in str(info.value)
    assert "(from $REPROQ_CONCURRENCY)" in str(info.value)


def test_pool_overrides_address_a_pool_by_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[pools]]\nname = "a"\nqueues = ["a"]\n[[pools]]\nname = "cpu"\nqueues = ["cpu"]\n',
    )
    settings = load_settings(path, env={}, overrides={"pools.cpu.concurrency": 3})
    assert settings.pool("cpu").concurrency == 3
    assert settings.pool("a").concurrency == 10
    assert settings.source_of("pools.cpu.concurrency") == "flag:--concurrency"
    with pytest.raises(ConfigError, match="no pool named 'cpuu'; did you mean 'cpu'"):
        load_settings(path, env={}, overrides={"pools.cpuu.concurrency": 3})


def test_relative_paths_in_a_file_are_relative_to_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [database]
        embedded_data_dir = "data/pg"
        [worker]
        logs_dir = "logs"
        """,
    )
    settings = load_settings(path, env={})
    assert settings.database.embedded_data_dir == tmp_path / "data/pg"
    assert settings.worker.logs_dir == tmp_path / "logs"
    from_env = load_settings(path, env={"REPROQ_LOGS_DIR": "rel/logs"})
    assert from_env.worker.logs_dir == Path("rel/logs")


# -- the model ------------------------------------------------------------------------


def test_full_model_is_built_from_the_canonical_shape(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[pools]]
        name = "io"
        queues = ["default", "emails"]
        concurrency = 16
        timeout_seconds = "15m"

        [[pools]]
        name = "django"
        queues = ["django"]
        executor = "subprocess"
        [pools.options]
        python = "/srv/app/.venv/bin/python"
        payload_mode = "file"

        [queues.emails]
        rate = "600/m"
        paused = true
        reason = "provider outage"

        [limits]
        global = 100
        "task:app.tasks.call_api" = { rate = 0.5, burst = 3 }

        [[schedules]]
        name = "report"
        cron = "CRON_TZ=Europe/Paris 30  2 * * *"
        task = "app.tasks.report"
        args = [1, [2, 3]]
        kwargs = { full = true, tags = ["a"] }
        misfire = "all"
        misfire_limit = 5
        """,
    )
    settings = load_settings(path, env={})
    io, django = settings.pools
    assert io.timeout_seconds == 900
    assert io.options == ThreadOptions()
    assert django.executor is ExecutorKind.SUBPROCESS
    assert django.options == SubprocessOptions(
        python="/srv/app/.venv/bin/python", payload_mode=PayloadMode.FILE
    )
    assert settings.queue_names == ("default", "emails", "django")
    emails = settings.queue("emails")
    assert (emails.paused, emails.reason, emails.rate, emails.burst) == (
        True,
        "provider outage",
        10.0,
        10,
    )
    assert settings.queue("other").paused is False
    assert set(settings.limits) == {
        RateLimitSettings(key="global", rate=100.0, burst=100),
        RateLimitSettings(key="task:app.tasks.call_api", rate=0.5, burst=3),
        RateLimitSettings(key="queue:emails", rate=10.0, burst=10),
    }
    (report,) = settings.schedules
    assert report.cron == "30 2 * * *"
    assert report.timezone == "Europe/Paris"
    assert report.cron_expr == "CRON_TZ=Europe/Paris 30 2 * * *"
    assert report.misfire is MisfirePolicy.ALL
    assert report.payload() == {"args": [1, [2, 3]], "kwargs": {"full": True, "tags": ["a"]}}
    with pytest.raises(TypeError):
        report.kwargs["full"] = False  # type: ignore[index]


def test_metrics_address_alone_enables_metrics(tmp_path: Path) -> None:
    path = write(tmp_path, '[metrics]\naddr = "[::1]:9100"\n')
    metrics = load_settings(path, env={}).metrics
    assert metrics.enabled is True
    assert (metrics.host, metrics.port, metrics.is_loopback) == ("::1", 9100, True)
    off = write(tmp_path, '[metrics]\naddr = "0.0.0.0:9100"\nenabled = false\n', "off.toml")
    assert load_settings(off, env={}).metrics.enabled is False
    assert load_settings(off, env={}).metrics.is_loopback is False


def test_allow_list_prefix_without_a_dot_is_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, '[worker]\nallowed_task_modules = ["app.tasks"]\n')
    settings = load_settings(path, env={})
    (warning,) = settings.warnings
    assert warning.startswith(f"{path}:2: worker.allowed_task_modules: ")
    assert "no trailing dot" in warning


def test_schedule_outside_the_allow_list_is_a_warning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [worker]
        allowed_task_modules = ["app.tasks."]
        [[schedules]]
        name = "x"
        cron = "@hourly"
        task = "other.tasks.x"
        """,
    )
    settings = load_settings(path, env={})
    assert settings.schedules[0].cron == "0 * * * *"
    (warning,) = settings.warnings
    assert warning.startswith(f"{path}:6: schedules[0].task: ")


# -- interpolation --------------------------------------------------------------------


def test_interpolation_fills_strings_anywhere_in_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [database]
        dsn = "postgresql://app:${DB_PASSWORD}@${DB_HOST:-localhost}/app"

        [[pools]]
        name = "main"
        queues = ["${QUEUE}", "q-${MISSING_WITH_DEFAULT:-fallback}"]

        [[schedules]]
        name = "x"
        cron = "0 * * * *"
        task = "app.tasks.x"
        kwargs = { who = "${WHO}", cost = "$$5" }
        """,
    )
    env = {"DB_PASSWORD": "pw", "QUEUE": "jobs", "WHO": "ops", "DB_HOST": ""}
    settings = load_settings(path, env=env)
    # As in a shell, the default also applies to a variable that is set but empty.
    assert settings.database.dsn == "postgresql://app:pw@localhost/app"
    assert settings.pools[0].queues == ("jobs", "q-fallback")
    assert settings.schedules[0].payload()["kwargs"] == {"who": "ops", "cost": "$5"}


def test_interpolated_values_are_validated_like_written_ones(tmp_path: Path) -> None:
    path = write(tmp_path, '[worker]\nlease_seconds = "${LEASE:-90s}"\n')
    assert load_settings(path, env={}).worker.lease_seconds == 90
    assert load_settings(path, env={"LEASE": "2m"}).worker.lease_seconds == 120
    problems = check_file(path, env={"LEASE": "long"})
    assert [(p.key, p.line) for p in problems] == [("worker.lease_seconds", 2)]


# -- upstream's flat shape ------------------------------------------------------------


def test_upstream_example_maps_onto_the_model() -> None:
    path = REPO / "configs" / "reproq.example.toml"
    settings = load_settings(path, env={})
    assert settings.database.dsn == "postgres://user:pass@localhost:5432/reproq?sslmode=disable"
    assert settings.worker.worker_id == "worker-1"
    assert settings.worker.allowed_task_modules == ("myapp.tasks.", "tasks.")
    assert settings.worker.poll_interval == 5.0  # poll_max_backoff
    assert settings.worker.logs_dir is None  # "" disables logs upstream
    assert settings.worker.max_output_bytes == 1048576
    (pool,) = settings.pools
    assert pool.name == "default"
    assert pool.queues == ("default", "high")
    assert pool.concurrency == 10
    assert pool.timeout_seconds == 3600  # exec_timeout
    # Upstream runs every task as `python_bin -m executor_module`.
    assert pool.executor is ExecutorKind.SUBPROCESS
    assert pool.options == SubprocessOptions(
        python="python3", module="reproq_django.executor", payload_mode=PayloadMode.STDIN
    )
    assert settings.beat.tick == 30.0  # interval
    assert settings.metrics.enabled is True
    assert settings.metrics.addr == "127.0.0.1:9090"
    assert settings.metrics.auth_token is None
    assert settings.metrics.allowed_cidrs == ("127.0.0.1/32",)
    ignored = {re.search(r": (\w+\.\w+): ", w).group(1) for w in settings.warnings}  # type: ignore[union-attr]
    assert ignored == {"worker.poll_min_backoff", "worker.max_attempts_default"}
    metrics = settings.metrics
    assert (metrics.auth_limit, metrics.auth_window, metrics.auth_max_entries) == (30, 60.0, 1000)
    assert (metrics.tls_cert, metrics.tls_key, metrics.tls_client_ca) == (None, None, None)


def test_upstream_port_alone_listens_on_every_interface(tmp_path: Path) -> None:
    path = write(tmp_path, '[metrics]\naddr = ""\nport = 9100\n')
    metrics = load_settings(path, env={}).metrics
    assert (metrics.enabled, metrics.addr) == (True, "0.0.0.0:9100")


def test_upstream_worker_and_beat_dsn_fill_the_database_dsn(tmp_path: Path) -> None:
    path = write(tmp_path, '[worker]\ndsn = "postgresql://w/db"\n[beat]\ndsn = ""\n')
    assert load_settings(path, env={}).database.dsn == "postgresql://w/db"


def test_upstream_stdout_and_stderr_limits_merge_to_the_larger(tmp_path: Path) -> None:
    path = write(tmp_path, "[worker]\nmax_stdout_bytes = 100\nmax_stderr_bytes = 300\n")
    assert load_settings(path, env={}).worker.max_output_bytes == 300


def test_flat_worker_without_executor_keys_runs_threads(tmp_path: Path) -> None:
    path = write(tmp_path, '[worker]\nconcurrency = 3\nqueues = ["a"]\n')
    (pool,) = load_settings(path, env={}).pools
    assert (pool.executor, pool.concurrency, pool.queues) == (ExecutorKind.THREAD, 3, ("a",))


def test_flat_worker_connections_go_to_the_one_pool(tmp_path: Path) -> None:
    path = write(tmp_path, "[worker]\nconcurrency = 800\nconnections = 2\n")
    (pool,) = load_settings(path, env={}).pools
    assert (pool.concurrency, pool.connections) == (800, 2)
    too_many = write(tmp_path, "[worker]\nconcurrency = 1\nconnections = 2\n")
    with pytest.raises(ConfigError, match=r":3: worker\.connections: must not exceed"):
        load_settings(too_many, env={})


# -- show -----------------------------------------------------------------------------


def test_show_redacts_secrets_and_lists_each_source(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [database]
        dsn = "postgresql://app:${DB_PASSWORD}@db:5432/app"
        [metrics]
        addr = "0.0.0.0:9090"
        auth_token = "${TOKEN}"
        """,
    )
    settings = load_settings(
        path,
        env={"DB_PASSWORD": "hunter2", "TOKEN": "s3cr3t", "REPROQ_LOG_LEVEL": "warning"},
        overrides={"worker.lease_seconds": 400},
    )
    text = show_settings(settings)
    assert "hunter2" not in text
    assert "s3cr3t" not in text
    lines = text.splitlines()
    assert any(
        re.fullmatch(
            rf'dsn = "postgresql://app:\*\*\*@db:5432/app" +# file:{re.escape(str(path))}', line
        )
        for line in lines
    )
    assert any(re.fullmatch(r'auth_token = "\*\*\*" +# file:.*', line) for line in lines)
    assert any(re.fullmatch(r'level = "WARNING" +# env:REPROQ_LOG_LEVEL', line) for line in lines)
    assert any(
        re.fullmatch(r"lease_seconds = 400.0 +# flag:--lease-seconds", line) for line in lines
    )
    assert any(re.fullmatch(r"pool_size = 10 +# default", line) for line in lines)
    assert any(line.startswith("# worker_id is not set") for line in lines)


def test_show_output_is_toml_that_loads_back_to_the_same_settings(tmp_path: Path) -> None:
    original = load_settings(REPO / "configs" / "dev.toml", env={})
    shown = write(tmp_path, show_settings(original), "shown.toml")
    tomllib.loads(shown.read_text())
    reloaded = load_settings(shown, env={})

    def origin_free(settings: Settings) -> Settings:
        return dataclasses.replace(settings, sources={}, source_file=None, warnings=())

    assert origin_free(reloaded) == origin_free(original)


def test_show_of_prod_is_valid_toml_with_pool_options(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://u:pw@db/app", "REPROQ_METRICS_TOKEN": "t"}
    text = show_settings(load_settings(REPO / "configs" / "prod.toml", env=env))
    doc = tomllib.loads(text)
    cpu = next(pool for pool in doc["pools"] if pool["name"] == "cpu")
    assert cpu["options"] == {"max_tasks_per_child": 200, "max_memory_mb": 1024}
    assert doc["limits"]["task:app.tasks.call_partner_api"] == {"rate": 5.0, "burst": 5}
    assert "queue:emails" not in doc["limits"]  # shown under [queues.emails] instead
    assert doc["queues"]["emails"]["rate"] == 10.0


# -- the starter file -----------------------------------------------------------------


def test_starter_config_loads_cleanly(tmp_path: Path) -> None:
    path = write(tmp_path, starter_config())
    assert check_file(path, env={}) == []
    assert load_settings(path, env={}).warnings == ()


_COMMENTED_TOML = re.compile(r"^# (\[\[?[\w.]+\]\]?$|[\w\"][^ ]* = )")


def test_starter_config_commented_examples_are_valid_too(tmp_path: Path) -> None:
    lines = [
        line[2:] if _COMMENTED_TOML.match(line) else line for line in starter_config().splitlines()
    ]
    uncommented = "\n".join(lines)
    assert "[[schedules]]\nname = " in uncommented
    path = write(tmp_path, uncommented)
    env = {"DATABASE_URL": "postgresql://x/y", "REPROQ_METRICS_TOKEN": "t"}
    assert [str(p) for p in check_file(path, env=env)] == []


_COMMENTED_YAML = re.compile(r"^(\s*)# (\s*(?:- )?(?:[a-z_]+|\"[^\"]+\"):(?: |$))")


def _uncommented_yaml() -> str:
    return "\n".join(
        _COMMENTED_YAML.sub(r"\1\2", line) for line in starter_config("x.yaml").splitlines()
    )


def _comparable(settings: Settings) -> Settings:
    return dataclasses.replace(settings, source_file=None, sources={}, warnings=())


def test_the_yaml_starter_says_what_the_toml_starter_says(tmp_path: Path) -> None:
    toml_path = write(tmp_path, starter_config("reproq.toml"), "reproq.toml")
    yaml_path = write(tmp_path, starter_config("reproq.yml"), "reproq.yml")
    assert check_file(yaml_path, env={}) == []
    assert load_settings(yaml_path, env={}).warnings == ()
    assert _comparable(load_settings(yaml_path, env={})) == _comparable(
        load_settings(toml_path, env={})
    )


def test_the_yaml_starter_commented_examples_match_the_toml_ones(tmp_path: Path) -> None:
    toml_lines = [
        line[2:] if _COMMENTED_TOML.match(line) else line for line in starter_config().splitlines()
    ]
    toml_path = write(tmp_path, "\n".join(toml_lines), "reproq.toml")
    uncommented = _uncommented_yaml()
    assert "schedules:\n  - name: " in uncommented
    yaml_path = write(tmp_path, uncommented, "reproq.yaml")
    env = {"DATABASE_URL": "postgresql://x/y", "REPROQ_METRICS_TOKEN": "t"}
    assert [str(p) for p in check_file(yaml_path, env=env)] == []
    assert _comparable(load_settings(yaml_path, env=env)) == _comparable(
        load_settings(toml_path, env=env)
    )
