"""The history's partitions: names, day bounds, and which jobs count as live."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from jobq.domain.history import (
    LIVE_STATUSES,
    PartmanState,
    day_start,
    partition_name,
    partman_refusal,
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
