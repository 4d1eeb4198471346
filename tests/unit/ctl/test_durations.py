"""Durations and instants as jq-ctl parses and prints them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobq.ctl.durations import (
    DurationError,
    age,
    humanize_seconds,
    iso_utc,
    parse_duration,
    parse_instant,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("2d", timedelta(days=2)),
        ("1.5h", timedelta(minutes=90)),
        ("1m30s", timedelta(seconds=90)),
        ("45", timedelta(seconds=45)),
        ("0.25", timedelta(milliseconds=250)),
        (" 10S ", timedelta(seconds=10)),
        ("0s", timedelta(0)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5x", "-5s", "m", "1h 30m", "h1", "5 m", "1e3s", "--"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(DurationError, match=r"is not a duration \(e\.g\. 30s"):
        parse_duration(text)


@given(st.integers(0, 10**6), st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_any_whole_number_with_a_unit_parses(number: int, unit: str) -> None:
    seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert parse_duration(f"{number}{unit}") == timedelta(seconds=number * seconds)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-01T09:00:00Z", datetime(2030, 1, 1, 9, tzinfo=UTC)),
        ("2030-01-01T09:00:00+02:00", datetime(2030, 1, 1, 7, tzinfo=UTC)),
        ("2030-01-01T09:00:00", datetime(2030, 1, 1, 9, tzinfo=UTC)),  # no zone: UTC
        ("2030-01-01", datetime(2030, 1, 1, tzinfo=UTC)),
        ("2030-01-01 09:00:00.5-01:00", datetime(2030, 1, 1, 10, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_instants_parse_to_utc(text: str, expected: datetime) -> None:
    parsed = parse_instant(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["tomorrow", "2030-13-01T00:00:00Z", "", "5m"])
def test_bad_instants_are_explained(text: str) -> None:
    with pytest.raises(DurationError, match="is not an ISO 8601 date-time"):
        parse_instant(text)


def test_iso_utc_has_microseconds_and_a_z() -> None:
    moment = datetime(2024, 5, 1, 14, 0, 0, 1234, tzinfo=UTC)
    assert iso_utc(moment) == "2024-05-01T14:00:00.001234Z"
    other_zone = parse_instant("2024-05-01T16:00:00.001234+02:00")
    assert iso_utc(other_zone) == "2024-05-01T14:00:00.001234Z"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (3, "3s"),
        (59.9, "59s"),
        (60, "1m"),
        (90, "1m30s"),
        (300, "5m"),
        (610, "10m"),
        (3600, "1h"),
        (5400, "1h30m"),
        (86400 + 4 * 3600, "1d4h"),
        (3 * 86400, "3d"),
    ],
)
def test_humanized_durations_are_compact(seconds: float, text: str) -> None:
    assert humanize_seconds(seconds) == text


def test_ages_look_back_and_ahead() -> None:
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert age(now - timedelta(seconds=3), now) == "3s ago"
    assert age(now - timedelta(minutes=5), now) == "5m ago"
    assert age(now - timedelta(milliseconds=300), now) == "0s ago"
    assert age(now, now) == "0s ago"
    assert age(now + timedelta(minutes=5), now) == "in 5m"
