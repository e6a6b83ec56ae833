"""Every file in configs/ loads and validates, so the examples cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from reproq.config import ExecutorKind, MisfirePolicy, check_file, load_settings

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# What the example files read from the environment.
ENV = {
    "DATABASE_URL": "postgresql://reproq:secret@db.internal:5432/app",
    "REPROQ_METRICS_TOKEN": "metrics-token",
}


def test_there_are_example_configs() -> None:
    names = {path.name for path in CONFIGS.glob("*.toml")}
    assert {"dev.toml", "prod.toml", "reproq.example.toml"} <= names


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_config_is_valid(path: Path) -> None:
    assert [str(problem) for problem in check_file(path, env=ENV)] == []
    settings = load_settings(path, env=ENV)
    assert settings.pools
    assert settings.source_file == path


def test_dev_runs_the_demo_tasks_on_the_embedded_database() -> None:
    settings = load_settings(CONFIGS / "dev.toml", env={})
    assert settings.database.dsn is None
    assert settings.worker.allowed_task_modules == ("reproq.demo.",)
    assert len(settings.pools) == 1
    assert all(s.task.startswith("reproq.demo.") for s in settings.schedules)
    assert any(s.cron == "* * * * *" for s in settings.schedules)
    assert settings.beat.enabled
    assert settings.metrics.enabled
    assert settings.metrics.is_loopback
    assert settings.metrics.auth_token is None
    assert settings.warnings == ()


def test_prod_uses_database_url_several_pools_limits_and_authenticated_metrics() -> None:
    settings = load_settings(CONFIGS / "prod.toml", env=ENV)
    assert settings.database.dsn == ENV["DATABASE_URL"]
    assert {pool.name for pool in settings.pools} == {"default", "high", "cpu"}
    assert settings.pool("cpu").executor is ExecutorKind.PROCESS
    assert {limit.key for limit in settings.limits} >= {"global", "queue:emails"}
    assert {s.timezone for s in settings.schedules} > {"UTC"}
    assert {s.misfire for s in settings.schedules} == set(MisfirePolicy)
    assert settings.metrics.auth_token == ENV["REPROQ_METRICS_TOKEN"]
    assert settings.metrics.allowed_cidrs
    assert settings.logging.json is True
    assert settings.warnings == ()


def test_prod_refuses_to_load_without_its_database_url() -> None:
    problems = check_file(CONFIGS / "prod.toml", env={"REPROQ_METRICS_TOKEN": "t"})
    assert [(p.key, "DATABASE_URL is not set" in p.message) for p in problems] == [
        ("database.dsn", True)
    ]
