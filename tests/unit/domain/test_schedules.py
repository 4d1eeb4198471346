"""Tick arithmetic of schedules (domain/schedules.py): cron in time zones, across daylight-saving
changes, intervals, and the missed-tick policies. Every instant is given: no clock is read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobq.domain.errors import InvalidArgument
from jobq.domain.schedules import (
    SKIP_GRACE,
    MissedPolicy,
    Timing,
    check_cron,
    check_schedule_name,
    check_time_zone,
    parse_timing,
    plan_tick,
)

SKIP, ONCE = MissedPolicy.SKIP, MissedPolicy.ONCE


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def cron(expression: str, zone: str = "UTC") -> Timing:
    return Timing(expression, zone, None)


def every(seconds: int) -> Timing:
    return Timing(None, "UTC", seconds)


# --- cron --------------------------------------------------------------------------------------


def test_the_next_tick_is_strictly_after_the_instant() -> None:
    five = cron("*/5 * * * *")
    assert five.first_after(utc(2026, 1, 1, 12, 3, 59)) == utc(2026, 1, 1, 12, 5)
    assert five.first_after(utc(2026, 1, 1, 12, 5)) == utc(2026, 1, 1, 12, 10)
    assert five.first_after(utc(2026, 1, 1, 12, 5, 0) + timedelta(microseconds=1)) == utc(
        2026, 1, 1, 12, 10
    )


def test_a_cron_time_is_read_in_its_time_zone() -> None:
    nine_paris = cron("0 9 * * *", "Europe/Paris")
    assert nine_paris.first_after(utc(2026, 1, 15)) == utc(2026, 1, 15, 8)  # UTC+1 in winter
    assert nine_paris.first_after(utc(2026, 7, 15)) == utc(2026, 7, 15, 7)  # UTC+2 in summer
    nine_ny = cron("0 9 * * *", "America/New_York")
    assert nine_ny.first_after(utc(2026, 1, 15)) == utc(2026, 1, 15, 14)


def test_the_spring_change_moves_a_daily_time_by_an_hour_in_utc() -> None:
    """Paris goes from UTC+1 to UTC+2 on 2026-03-29 at 02:00 local (01:00 UTC)."""
    nine = cron("0 9 * * *", "Europe/Paris")
    ticks = nine.upcoming(nine.first_after(utc(2026, 3, 27, 12)), 3)
    assert ticks == [utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)]


def test_a_time_the_spring_change_skips_fires_once_after_the_gap() -> None:
    """02:30 does not exist in Paris on 2026-03-29: that day's tick is at 03:00 local."""
    half_past_two = cron("30 2 * * *", "Europe/Paris")
    ticks = half_past_two.upcoming(half_past_two.first_after(utc(2026, 3, 28, 12)), 2)
    assert ticks == [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]


def test_a_time_the_autumn_change_repeats_fires_at_both_instants() -> None:
    """02:30 happens twice in Paris on 2026-10-25 (at UTC+2, then at UTC+1): two distinct
    ticks, so two jobs, each unique by its instant."""
    hourly = cron("30 * * * *", "Europe/Paris")
    ticks = hourly.upcoming(hourly.first_after(utc(2026, 10, 24, 23)), 4)
    assert ticks == [
        utc(2026, 10, 24, 23, 30),  # 01:30 CEST
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 1, 30),  # 02:30 CET
        utc(2026, 10, 25, 2, 30),  # 03:30 CET
    ]
    assert len(set(ticks)) == 4


def test_the_latest_due_cron_tick_takes_one_step_however_long_the_downtime() -> None:
    minute = cron("* * * * *")
    due = utc(2026, 1, 1, 0, 1)
    assert minute.latest_due(due, utc(2026, 1, 1, 0, 1, 30)) == due
    assert minute.latest_due(due, utc(2027, 6, 1, 10, 42, 5)) == utc(2027, 6, 1, 10, 42)


# --- intervals ----------------------------------------------------------------------------------


def test_interval_ticks_keep_their_phase() -> None:
    thirty = every(30)
    start = utc(2026, 1, 1, 0, 0, 10)
    assert thirty.first_after(start) == utc(2026, 1, 1, 0, 0, 40)  # creation + interval
    assert thirty.first_after(utc(2026, 1, 1, 0, 5, 1), start) == utc(2026, 1, 1, 0, 5, 10)
    assert thirty.first_after(utc(2026, 1, 1, 0, 5, 10), start) == utc(2026, 1, 1, 0, 5, 40)
    assert thirty.first_after(utc(2026, 1, 1), start) == start  # an anchor still ahead
    assert thirty.latest_due(start, utc(2026, 1, 1, 0, 5, 9)) == utc(2026, 1, 1, 0, 4, 40)


@given(
    seconds=st.integers(min_value=1, max_value=100_000),
    offset=st.integers(min_value=0, max_value=10**9),
)
def test_an_interval_tick_after_any_instant_is_on_the_grid_and_within_one_step(
    seconds: int, offset: int
) -> None:
    anchor = utc(2026, 1, 1)
    instant = anchor + timedelta(milliseconds=offset)
    tick = every(seconds).first_after(instant, anchor)
    assert instant < tick <= instant + timedelta(seconds=seconds)
    assert (tick - anchor) % timedelta(seconds=seconds) == timedelta(0)


# --- missed ticks -------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [SKIP, ONCE])
def test_a_tick_reached_in_time_is_enqueued_under_either_policy(policy: MissedPolicy) -> None:
    due = utc(2026, 1, 1, 12, 5)
    plan = plan_tick(cron("*/5 * * * *"), due, due + timedelta(milliseconds=3), policy)
    assert (plan.enqueue, plan.next_run_at, plan.missed) == (due, utc(2026, 1, 1, 12, 10), False)


def test_skip_drops_the_ticks_missed_during_downtime() -> None:
    due = utc(2026, 1, 1, 12, 5)
    plan = plan_tick(cron("*/5 * * * *"), due, utc(2026, 1, 1, 13, 2), SKIP)
    assert plan.enqueue is None
    assert plan.next_run_at == utc(2026, 1, 1, 13, 5)
    assert plan.missed


def test_once_enqueues_the_latest_missed_tick_only() -> None:
    due = utc(2026, 1, 1, 12, 5)
    plan = plan_tick(cron("*/5 * * * *"), due, utc(2026, 1, 1, 13, 2), ONCE)
    assert plan.enqueue == utc(2026, 1, 1, 13, 0)
    assert plan.next_run_at == utc(2026, 1, 1, 13, 5)
    assert plan.missed


def test_skip_tolerates_a_late_loop_up_to_the_grace_but_not_beyond() -> None:
    daily = cron("0 3 * * *")
    due = utc(2026, 1, 2, 3)
    assert plan_tick(daily, due, due + SKIP_GRACE, SKIP).enqueue == due
    late = plan_tick(daily, due, due + SKIP_GRACE + timedelta(seconds=1), SKIP)
    assert late.enqueue is None
    assert late.next_run_at == utc(2026, 1, 3, 3)
    assert plan_tick(daily, due, due + timedelta(hours=5), ONCE).enqueue == due


def test_a_short_interval_behind_by_several_ticks_skips_to_the_next() -> None:
    due = utc(2026, 1, 1, 0, 0, 1)
    skip = plan_tick(every(1), due, due + timedelta(seconds=3, milliseconds=500), SKIP)
    assert skip.enqueue is None
    assert skip.next_run_at == due + timedelta(seconds=4)
    once = plan_tick(every(1), due, due + timedelta(seconds=3, milliseconds=500), ONCE)
    assert once.enqueue == due + timedelta(seconds=3)
    assert once.next_run_at == due + timedelta(seconds=4)


# --- validation ---------------------------------------------------------------------------------


def test_parse_timing_takes_cron_or_interval() -> None:
    assert parse_timing("*/5  *\t* * *", "", 0) == Timing("*/5 * * * *", "UTC", None)
    assert parse_timing("0 9 * * 1-5", "Europe/Paris", 0).time_zone == "Europe/Paris"
    assert parse_timing("", "", 30) == Timing(None, "UTC", 30)


@pytest.mark.parametrize(
    ("cron_text", "zone", "seconds", "message"),
    [
        ("", "", 0, "not neither"),
        ("* * * * *", "", 5, "not both"),
        ("", "UTC", 5, "cron schedules only"),
        ("", "", -5, "between 1 and"),
        ("", "", 10**10, "between 1 and"),
        ("* * * *", "", 0, "five fields"),
        ("0 0 * * * *", "", 0, "five fields"),
        ("@daily", "", 0, "five fields"),
        ("60 * * * *", "", 0, "invalid cron"),
        ("* 24 * * *", "", 0, "invalid cron"),
        ("* * 32 * *", "", 0, "invalid cron"),
        ("* * * 13 *", "", 0, "invalid cron"),
        ("a b c d e", "", 0, "invalid cron"),
        ("* " * 200, "", 0, "longer than"),
        ("* * * * *", "Nowhere/City", 0, "unknown time zone"),
        ("* * * * *", "/etc/localtime", 0, "unknown time zone"),
        ("* * * * *", "Europe/../../x", 0, "unknown time zone"),
    ],
)
def test_parse_timing_refuses_what_it_cannot_schedule(
    cron_text: str, zone: str, seconds: int, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_timing(cron_text, zone, seconds)


def test_names_and_zones() -> None:
    assert check_schedule_name("nightly-report.v2") == "nightly-report.v2"
    with pytest.raises(InvalidArgument, match="invalid schedule name"):
        check_schedule_name("a/b")
    assert check_time_zone("UTC") == "UTC"
    assert check_cron("0 0 1 1 *") == "0 0 1 1 *"
