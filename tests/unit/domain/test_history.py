"""The history's partitions: names, day bounds, and which jobs count as live."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from jobq.domain.history import (
    LIVE_STATUSES,
    Partition,
    PartmanState,
    day_start,
    is_day_partition,
    partition_name,
    partman_refusal,
    partman_registration,
)
from jobq.domain.states import JobStatus


def test_a_day_partition_is_named_and_bounded_by_its_utc_day() -> None:
    assert partition_name(date(2026, 12, 1)) == "job_events_p20261201"
    assert day_start(date(2026, 12, 1)) == datetime(2026, 12, 1, tzinfo=UTC)


def test_every_status_is_live_except_the_finished_ones() -> None:
    # A status added later must be placed on purpose: unlisted, its jobs' history could go.
    finished = {JobStatus.DONE, JobStatus.DEAD_LETTERED}
    assert set(LIVE_STATUSES) == set(JobStatus) - finished


def test_partition_names_in_jobqs_and_pg_partman_4s_spelling() -> None:
    assert partition_name(date(2026, 12, 1)) == "job_events_p20261201"
    assert partition_name(date(2026, 12, 1), "YYYY_MM_DD") == "job_events_p2026_12_01"


def test_pg_partman_4_may_keep_job_events_and_5_or_another_interval_may_not() -> None:
    fresh = PartmanState(schema="partman", version="4.7.2", registered=False)
    assert partman_refusal(fresh) is None
    daily = PartmanState("partman", "4.7.2", True, timedelta(days=1), "YYYY_MM_DD")
    assert partman_refusal(daily) is None
    five = PartmanState("partman", "5.2.4", False)
    assert "5.2.4" in (partman_refusal(five) or "")
    weekly = PartmanState("partman", "4.7.2", True, timedelta(days=7), 'IYYY"w"IW')
    assert "7 days" in (partman_refusal(weekly) or "")
    odd = PartmanState("partman", "4.7.2", True, timedelta(days=1), "YYYY-MM-DD")
    assert "YYYY-MM-DD" in (partman_refusal(odd) or "")


def _partition(name: str, lower: datetime | None, upper: datetime | None) -> Partition:
    return Partition(oid=0, name=name, lower=lower, upper=upper, is_default=False)


def _midnight(day: int) -> datetime:
    return datetime(2026, 12, day, tzinfo=UTC)


def test_registration_starts_at_jobqs_first_day_and_renames_only_whole_days() -> None:
    legacy = _partition("job_events_legacy", None, _midnight(2))
    days = [_partition(f"job_events_p202612{d:02}", _midnight(d), _midnight(d + 1)) for d in (2, 3)]
    by_hand = _partition("job_events_noon", _midnight(4) + timedelta(hours=12), _midnight(5))
    already = _partition("job_events_p2026_12_05", _midnight(5), _midnight(6))
    default = Partition(0, "job_events_default", None, None, True)

    start, renames = partman_registration([legacy, *days, by_hand, already, default], _midnight(1))

    assert start == date(2026, 12, 2)
    assert renames == [
        ("job_events_p20261202", "job_events_p2026_12_02"),
        ("job_events_p20261203", "job_events_p2026_12_03"),
    ]


def test_registration_without_days_starts_where_the_legacy_partition_ends_or_today() -> None:
    legacy = _partition("job_events_legacy", None, _midnight(9))
    assert partman_registration([legacy], _midnight(1)) == (date(2026, 12, 9), [])
    assert partman_registration([], _midnight(1) + timedelta(hours=23)) == (date(2026, 12, 1), [])
    assert not is_day_partition(legacy)
