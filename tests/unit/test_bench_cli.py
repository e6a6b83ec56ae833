"""``reproq bench``'s command line: which scenarios, how many rounds, and how big."""

from __future__ import annotations

import pytest

from reproq.cli import build_parser
from reproq.cli.stress import _bench_config
from reproq.errors import UsageError
from reproq.stress.bench import SCENARIOS, BenchConfig


def _config(*argv: str) -> BenchConfig:
    return _bench_config(build_parser().parse_args(["bench", *argv]))


def test_every_scenario_runs_by_default_the_reference_first() -> None:
    config = _config()
    assert config.scenarios == SCENARIOS
    assert config.autovacuum is False
    assert SCENARIOS[0] == "raw-claim"
    assert {"e2e-burst", "e2e-steady"} <= set(SCENARIOS)


def test_scenarios_come_from_arguments_and_repeatable_flags_without_duplicates() -> None:
    config = _config("enqueue", "--scenario", "raw-claim", "--scenario", "enqueue")
    assert config.scenarios == ("enqueue", "raw-claim")


def test_the_size_flags_are_taken_as_given_after_the_scale() -> None:
    config = _config(
        "--scale",
        "0.1",
        "--repeat",
        "3",
        "--burst-tasks",
        "50000",
        "--burst-concurrency",
        "32,100",
        "--steady-rate",
        "5000",
        "--steady-duration",
        "30s",
        "--autovacuum",
    )
    assert config.repeat == 3
    assert config.autovacuum is True
    assert (config.burst_count, config.burst_concurrency) == (50_000, (32, 100))
    assert (config.steady_rate, config.steady_seconds) == (5_000.0, 30.0)
    assert config.raw_count == 5_000  # scaled default
    assert config.enqueue_count == 10_000


@pytest.mark.parametrize(
    "argv",
    [
        ("nope",),
        ("--scenario", "e2e-bursty"),
        ("--repeat", "0"),
        ("--burst-concurrency", "32,x"),
        ("--burst-concurrency", "0"),
        ("--steady-rate", "0"),
        ("--raw-tasks", "0"),
    ],
)
def test_bad_bench_arguments_are_usage_errors(argv: tuple[str, ...]) -> None:
    with pytest.raises(UsageError):
        _config(*argv)
