"""Durations and times as written on the command line and in config files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from reproq.durations import DurationError, format_duration, parse_duration, parse_when
from reproq.errors import UsageError

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        (2.5, 2.5),
        ("45", 45.0),
        ("1.5", 1.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("7d", 604800.0),
        ("1h30m", 5400.0),
        ("1m 30.5s", 90.5),
        ("1h0m0s", 3600.0),  # Go-style, as upstream configs write it
        ("  10s ", 10.0),
        ("0", 0.0),
    ],
)
def test_parse_duration_reads_numbers_units_and_combinations(
    text: str | float, seconds: float
) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["-5s", "-1", -3, "abc", "5x", "", "1h-", "s", "1 h 2", "1e3"])
def test_parse_duration_rejects_negative_and_unreadable_values_naming_them(
    text: str | int,
) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text, key="worker.lease_seconds")
    message = str(info.value)
    assert message.startswith("worker.lease_seconds: invalid duration")
    assert repr(text) in message


@pytest.mark.parametrize("value", [True, float("nan"), float("inf"), None, [1]])
def test_parse_duration_rejects_non_numbers(value: object) -> None:
    with pytest.raises(DurationError):
        parse_duration(value)  # type: ignore[arg-type]


def test_duration_error_is_a_usage_error_and_a_value_error() -> None:
    # A UsageError gives exit code 2; a ValueError lets argparse use it as a type=.
    with pytest.raises(UsageError) as info:
        parse_duration("soon")
    assert isinstance(info.value, ValueError)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (1, "1s"),
        (3.5, "3.5s"),
        (90, "1m30s"),
        (5400, "1h30m"),
        (86401, "1d1s"),
        (604800, "7d"),
        (119.9999, "2m"),
        (-30, "-30s"),
    ],
)
def test_format_duration_is_short(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.001, 0.5, 1, 59, 61.25, 3599, 3600, 93784.5, 1209600])
def test_format_duration_reads_back_to_the_same_seconds(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_parse_when_reads_relative_times_from_now() -> None:
    assert parse_when("+30s", NOW) == NOW + timedelta(seconds=30)
    assert parse_when("+1h30m", NOW) == NOW + timedelta(minutes=90)
    assert parse_when("now", NOW) == NOW


def test_parse_when_reads_iso_8601_and_returns_utc() -> None:
    moment = parse_when("2025-03-01T10:00:00+01:00", NOW)
    assert moment == datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    assert moment.tzinfo is UTC
    assert parse_when("2025-03-01T10:00:00Z", NOW) == datetime(2025, 3, 1, 10, tzinfo=UTC)


def test_parse_when_takes_a_time_without_offset_as_utc() -> None:
    assert parse_when("2025-03-01 10:00", NOW) == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert parse_when("2025-03-01", NOW) == datetime(2025, 3, 1, tzinfo=UTC)


def test_parse_when_takes_a_naive_now_as_utc() -> None:
    naive = datetime(2025, 3, 1, 12, 0)
    assert parse_when("+1m", naive) == datetime(2025, 3, 1, 12, 1, tzinfo=UTC)


def test_parse_when_converts_an_aware_now_to_utc() -> None:
    paris_noon = datetime(2025, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    assert parse_when("+0s", paris_noon) == datetime(2025, 3, 1, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["tomorrow", "+soon", "-5m", "2025-13-01"])
def test_parse_when_rejects_unreadable_times_naming_them(text: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_when(text, NOW)
    assert repr(text) in str(info.value) or repr(text[1:]) in str(info.value)


def test_durations_stop_at_about_a_thousand_years() -> None:
    assert parse_duration("365000d") == 365_000 * 86_400
    with pytest.raises(DurationError, match=r"must be at most 365000d \(about 1000 years\)"):
        parse_duration("365001d", key="--older-than")
    with pytest.raises(DurationError, match="--run-after: invalid duration '999999999d'"):
        parse_when("+999999999d", NOW, key="--run-after")
    assert parse_when("+365000d", NOW) == NOW + timedelta(days=365_000)
