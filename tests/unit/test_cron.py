"""Cron parsing, time zones, DST rules and misfire policies (no database)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from reproq.clock import FakeClock, SystemClock
from reproq.schedule.cron import (
    MISSED_COUNT_CAP,
    CronSchedule,
    MisfirePlan,
    MisfirePolicy,
    format_cron_expr,
    split_cron_tz,
)


def utc(  # noqa: PLR0917
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


# -- parsing ---------------------------------------------------------------------------


def test_parse_normalises_whitespace_and_defaults_to_utc() -> None:
    schedule = CronSchedule.parse("  */5   *  * * 1-5 ")
    assert schedule.fields == "*/5 * * * 1-5"
    assert schedule.timezone == "UTC"
    assert schedule.stored_form == "*/5 * * * 1-5"


def test_parse_expands_macros_to_five_fields() -> None:
    assert CronSchedule.parse("@daily").fields == "0 0 * * *"
    assert CronSchedule.parse("@HOURLY").fields == "0 * * * *"


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "empty cron expression"),
        ("* * * *", "has 4 fields; expected 5"),
        ("0 * * * * *", "has 6 fields; expected 5"),
        ("61 * * * *", "invalid cron expression '61 * * * *'"),
        ("0 0 30 2 *", "never matches a date"),
        ("H * * * *", "hashed (H) and random (R) fields are not supported"),
        ("R 2 * * *", "hashed (H) and random (R) fields are not supported"),
        ("@reboot", "unsupported cron macro '@reboot'"),
        ("CRON_TZ= 0 * * * *", "CRON_TZ= names no time zone"),
        ("CRON_TZ=Mars/Olympus 0 * * * *", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_expressions_raise_value_error_with_reason(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        CronSchedule.parse(expr)


def test_unknown_timezone_argument_is_named() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Nowhere/Town'"):
        CronSchedule.parse("0 * * * *", "Nowhere/Town")


def test_day_names_are_not_mistaken_for_hashed_fields() -> None:
    assert CronSchedule.parse("0 9 * MAR-APR THU").fields == "0 9 * MAR-APR THU"


def test_cron_tz_prefix_sets_the_zone_and_wins_over_the_argument() -> None:
    schedule = CronSchedule.parse("CRON_TZ=Europe/Berlin 30 2 * * *", "America/New_York")
    assert schedule.timezone == "Europe/Berlin"
    assert schedule.fields == "30 2 * * *"
    assert schedule.stored_form == "CRON_TZ=Europe/Berlin 30 2 * * *"
    # 02:30 CET on a winter day is 01:30 UTC.
    assert schedule.next_after(utc(2026, 1, 10, 0, 0)) == utc(2026, 1, 10, 1, 30)


def test_tz_prefix_spelling_is_accepted_too() -> None:
    assert CronSchedule.parse("TZ=Asia/Kolkata 0 9 * * *").timezone == "Asia/Kolkata"


def test_split_and_format_cron_tz_round_trip() -> None:
    assert split_cron_tz("CRON_TZ=Europe/Berlin  0 * * * *") == ("Europe/Berlin", "0 * * * *")
    assert split_cron_tz("0 * * * *") == (None, "0 * * * *")
    assert format_cron_expr("0  *  * * *", "Europe/Berlin") == "CRON_TZ=Europe/Berlin 0 * * * *"
    assert format_cron_expr("0 * * * *", "UTC") == "0 * * * *"
    assert format_cron_expr("CRON_TZ=Asia/Tokyo 0 * * * *") == "CRON_TZ=Asia/Tokyo 0 * * * *"


def test_timezone_argument_is_used_without_prefix() -> None:
    schedule = CronSchedule.parse("0 9 * * *", "America/New_York")
    # 09:00 EST (UTC-5) in January.
    assert schedule.next_after(utc(2026, 1, 5, 12, 0)) == utc(2026, 1, 5, 14, 0)
    assert schedule.stored_form == "CRON_TZ=America/New_York 0 9 * * *"


# -- basic evaluation ------------------------------------------------------------------


def test_next_after_is_strictly_after_and_utc() -> None:
    schedule = CronSchedule.parse("*/15 * * * *")
    result = schedule.next_after(utc(2026, 5, 1, 10, 15))
    assert result == utc(2026, 5, 1, 10, 30)
    assert result.tzinfo is UTC


def test_next_after_accepts_any_aware_datetime_and_refuses_naive() -> None:
    schedule = CronSchedule.parse("0 * * * *")
    berlin = datetime(2026, 6, 1, 12, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert schedule.next_after(berlin) == utc(2026, 6, 1, 11, 0)
    with pytest.raises(ValueError, match="naive"):
        schedule.next_after(datetime(2026, 6, 1, 12, 30))


def test_fire_times_is_half_open_and_limited() -> None:
    schedule = CronSchedule.parse("0 * * * *")
    got = schedule.fire_times(utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 3, 0), 10)
    assert got == [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2), utc(2026, 1, 1, 3)]
    assert schedule.fire_times(utc(2026, 1, 1, 0, 0), utc(2026, 1, 2), 2) == got[:2]
    assert schedule.fire_times(utc(2026, 1, 1), utc(2026, 1, 2), 0) == []


def test_previous_at_or_before_includes_the_instant_itself() -> None:
    schedule = CronSchedule.parse("0 * * * *")
    assert schedule.previous_at_or_before(utc(2026, 1, 1, 5, 0)) == utc(2026, 1, 1, 5, 0)
    assert schedule.previous_at_or_before(utc(2026, 1, 1, 5, 59)) == utc(2026, 1, 1, 5, 0)


def test_day_of_month_and_week_combine_with_or_like_cron() -> None:
    schedule = CronSchedule.parse("0 0 13 * 5")  # the 13th or any Friday
    # 2026-02-06 is a Friday, the 13th of February 2026 is also a Friday.
    got = schedule.fire_times(utc(2026, 2, 1), utc(2026, 2, 15), 10)
    assert got == [utc(2026, 2, 6), utc(2026, 2, 13)]


# -- DST -------------------------------------------------------------------------------

BERLIN_SPRING_CHANGE = utc(2026, 3, 29, 1, 0)  # 02:00 CET -> 03:00 CEST
BERLIN_FALL_CHANGE = utc(2026, 10, 25, 1, 0)  # 03:00 CEST -> 02:00 CET


def _fires_on_day(schedule: CronSchedule, clock: FakeClock) -> list[datetime]:
    """Every fire time a beat would see ticking through the clock's next 24 hours."""
    seen: list[datetime] = []
    end = clock.now() + timedelta(hours=24)
    nxt = schedule.next_after(clock.now())
    while clock.now() < end:
        clock.advance(60)
        while nxt <= clock.now():
            seen.append(nxt)
            nxt = schedule.next_after(nxt)
    return seen


def test_spring_forward_nonexistent_time_fires_once_at_the_change() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Berlin")
    clock = FakeClock(utc(2026, 3, 28, 22, 0))  # 23:00 CET, the evening before
    assert _fires_on_day(schedule, clock) == [BERLIN_SPRING_CHANGE]  # 03:00 CEST


def test_spring_forward_neighbouring_days_fire_at_wall_time() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Berlin")
    assert schedule.next_after(utc(2026, 3, 27, 12)) == utc(2026, 3, 28, 1, 30)  # CET
    assert schedule.next_after(utc(2026, 3, 29, 12)) == utc(2026, 3, 30, 0, 30)  # CEST


def test_spring_forward_skipped_wall_times_collapse_into_one_run() -> None:
    schedule = CronSchedule.parse("*/30 * * * *", "Europe/Berlin")
    got = schedule.fire_times(utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 2, 0), 10)
    # 01:30 CET, then 02:00 and 02:30 (skipped) and 03:00 CEST are one run at the change.
    assert got == [
        utc(2026, 3, 29, 0, 30),
        BERLIN_SPRING_CHANGE,
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 29, 2, 0),
    ]


def test_spring_forward_in_new_york_uses_its_own_change_instant() -> None:
    schedule = CronSchedule.parse("CRON_TZ=America/New_York 30 2 * * *")
    clock = FakeClock(utc(2026, 3, 8, 4, 0))  # 23:00 EST on 7 March
    # 02:00 EST -> 03:00 EDT happens at 07:00 UTC.
    assert _fires_on_day(schedule, clock) == [utc(2026, 3, 8, 7, 0)]


def test_fall_back_repeated_time_fires_once_at_first_occurrence() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Berlin")
    clock = FakeClock(utc(2026, 10, 24, 21, 0))  # 23:00 CEST, the evening before
    assert _fires_on_day(schedule, clock) == [utc(2026, 10, 25, 0, 30)]  # 02:30 CEST


def test_fall_back_seen_from_inside_the_second_occurrence_does_not_fire_again() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Berlin")
    # 02:10 CET (second occurrence): today's 02:30 already fired during the first.
    assert schedule.next_after(utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 26, 1, 30)
    assert schedule.previous_at_or_before(utc(2026, 10, 25, 1, 40)) == utc(2026, 10, 25, 0, 30)


def test_fall_back_interval_schedule_fires_in_both_occurrences() -> None:
    schedule = CronSchedule.parse("0 * * * *", "Europe/Berlin")
    got = schedule.fire_times(utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 3, 0), 10)
    # Hourly in real time: 02:00 CEST, 02:00 CET, 03:00 CET, 04:00 CET.
    assert got == [
        utc(2026, 10, 25, 0),
        BERLIN_FALL_CHANGE,
        utc(2026, 10, 25, 2),
        utc(2026, 10, 25, 3),
    ]
    assert schedule.next_after(utc(2026, 10, 25, 0, 40)) == BERLIN_FALL_CHANGE


def test_descending_and_ascending_agree_across_both_changes() -> None:
    for expr in ("*/20 * * * *", "30 2 * * *", "15 1-3 * * *", "0 */2 * * *"):
        schedule = CronSchedule.parse(expr, "Europe/Berlin")
        for start in (utc(2026, 3, 28, 20), utc(2026, 10, 24, 20)):
            end = start + timedelta(hours=12)
            forward = schedule.fire_times(start, end, 1000)
            assert forward == sorted(set(forward))
            backward = []
            for instant in schedule._descending(end):
                if instant <= start:
                    break
                backward.append(instant)
            assert backward[::-1] == forward, expr


# -- misfire policies ------------------------------------------------------------------

EVERY_10 = CronSchedule.parse("*/10 * * * *")
DOWN_SINCE = utc(2026, 1, 1, 10, 0)  # next_run_at when beat stopped
BACK_AT = utc(2026, 1, 1, 11, 5)  # beat comes back: 10:00 .. 11:00 are due (7 runs)


def test_nothing_is_due_before_next_run_at() -> None:
    plan = EVERY_10.misfire_fire_times("latest", DOWN_SINCE, DOWN_SINCE - timedelta(seconds=1), 5)
    assert plan == MisfirePlan(fire_times=(), next_run_at=DOWN_SINCE, missed=0)


def test_on_time_fire_is_enqueued_under_every_policy() -> None:
    clock = FakeClock(DOWN_SINCE + timedelta(seconds=2))
    for policy in MisfirePolicy:
        plan = EVERY_10.misfire_fire_times(policy, DOWN_SINCE, clock.now(), 5)
        assert plan.fire_times == (DOWN_SINCE,)
        assert plan.next_run_at == utc(2026, 1, 1, 10, 10)
        assert plan.missed == 0


def test_latest_enqueues_one_run_for_the_most_recent_missed_time() -> None:
    plan = EVERY_10.misfire_fire_times(MisfirePolicy.LATEST, DOWN_SINCE, BACK_AT, 100)
    assert plan.fire_times == (utc(2026, 1, 1, 11, 0),)
    assert plan.next_run_at == utc(2026, 1, 1, 11, 10)
    assert plan.missed == 6


def test_all_enqueues_every_missed_time_oldest_first() -> None:
    plan = EVERY_10.misfire_fire_times("all", DOWN_SINCE, BACK_AT, 100)
    assert plan.fire_times == tuple(
        utc(2026, 1, 1, 10, 0) + timedelta(minutes=10 * i) for i in range(7)
    )
    assert plan.next_run_at == utc(2026, 1, 1, 11, 10)
    assert plan.missed == 0


def test_all_over_the_limit_keeps_the_newest_and_counts_the_rest() -> None:
    plan = EVERY_10.misfire_fire_times("all", DOWN_SINCE, BACK_AT, 3)
    assert plan.fire_times == (
        utc(2026, 1, 1, 10, 40),
        utc(2026, 1, 1, 10, 50),
        utc(2026, 1, 1, 11, 0),
    )
    assert plan.missed == 4


def test_skip_enqueues_nothing_missed() -> None:
    plan = EVERY_10.misfire_fire_times("skip", DOWN_SINCE, BACK_AT, 100)
    assert plan.fire_times == ()
    assert plan.next_run_at == utc(2026, 1, 1, 11, 10)
    assert plan.missed == 7


def test_skip_still_runs_a_fire_time_within_the_grace() -> None:
    now = utc(2026, 1, 1, 11, 0, 45)
    plan = EVERY_10.misfire_fire_times("skip", DOWN_SINCE, now, 100)
    assert plan.fire_times == (utc(2026, 1, 1, 11, 0),)
    assert plan.missed == 6
    late = EVERY_10.misfire_fire_times("skip", DOWN_SINCE, now, 100, grace=timedelta(seconds=30))
    assert late.fire_times == ()


def test_off_grid_next_run_at_counts_as_due() -> None:
    # reproq-django may set next_run_at to any instant; that run is still owed.
    off_grid = utc(2026, 1, 1, 10, 3)
    plan = EVERY_10.misfire_fire_times("all", off_grid, utc(2026, 1, 1, 10, 25), 10)
    assert plan.fire_times == (off_grid, utc(2026, 1, 1, 10, 10), utc(2026, 1, 1, 10, 20))
    latest = EVERY_10.misfire_fire_times("latest", off_grid, utc(2026, 1, 1, 10, 5), 10)
    assert latest.fire_times == (off_grid,)
    assert latest.next_run_at == utc(2026, 1, 1, 10, 10)


def test_misfire_over_dst_change_uses_real_instants() -> None:
    schedule = CronSchedule.parse("0 * * * *", "Europe/Berlin")
    plan = schedule.misfire_fire_times("all", utc(2026, 10, 25, 0), utc(2026, 10, 25, 2, 30), 10)
    assert plan.fire_times == (utc(2026, 10, 25, 0), utc(2026, 10, 25, 1), utc(2026, 10, 25, 2))


def test_long_downtime_count_is_capped_and_latest_is_exact() -> None:
    every_minute = CronSchedule.parse("* * * * *")
    now = DOWN_SINCE + timedelta(days=30)
    plan = every_minute.misfire_fire_times("latest", DOWN_SINCE, now, 100)
    assert plan.fire_times == (now,)
    assert plan.missed == MISSED_COUNT_CAP - 1
    assert plan.next_run_at == now + timedelta(minutes=1)


def test_misfire_rejects_bad_policy_and_limit() -> None:
    with pytest.raises(ValueError):
        EVERY_10.misfire_fire_times("sometimes", DOWN_SINCE, BACK_AT, 5)
    with pytest.raises(ValueError, match="at least 1"):
        EVERY_10.misfire_fire_times("all", DOWN_SINCE, BACK_AT, 0)


# -- clocks ----------------------------------------------------------------------------


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(utc(2026, 1, 1))
    assert clock.now() == utc(2026, 1, 1)
    clock.sleep(1.5)
    assert clock.now() == utc(2026, 1, 1, 0, 0, 1, 500000)
    assert clock.advance(60) == utc(2026, 1, 1, 0, 1, 1, 500000)
    clock.set(utc(2025, 6, 1))
    assert clock.now() == utc(2025, 6, 1)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError, match="naive"):
        FakeClock(datetime(2026, 1, 1))


def test_system_clock_is_aware_utc() -> None:
    now = SystemClock().now()
    assert now.tzinfo is UTC
    assert abs((datetime.now(UTC) - now).total_seconds()) < 5
