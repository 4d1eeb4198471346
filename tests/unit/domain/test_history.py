"""The history's partitions: names, day bounds, and which jobs count as live."""

from __future__ import annotations

from datetime import UTC, date, datetime

from jobq.domain.history import LIVE_STATUSES, day_start, partition_name
from jobq.domain.states import JobStatus


def test_a_day_partition_is_named_and_bounded_by_its_utc_day() -> None:
    assert partition_name(date(2026, 12, 1)) == "job_events_p20261201"
    assert day_start(date(2026, 12, 1)) == datetime(2026, 12, 1, tzinfo=UTC)


def test_every_status_is_live_except_the_finished_ones() -> None:
    # A status added later must be placed on purpose: unlisted, its jobs' history could go.
    finished = {JobStatus.DONE, JobStatus.DEAD_LETTERED}
    assert set(LIVE_STATUSES) == set(JobStatus) - finished
