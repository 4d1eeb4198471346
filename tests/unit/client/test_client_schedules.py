"""The SDK's side of schedules: the request it sends, what it refuses before sending, and the
ScheduleInfo it hands back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobq.client import InvalidJob, ScheduleInfo, SubmitOptions, command_job, handler_job
from jobq.client.schedules import schedule_request
from jobq.rpc._gen import schedules_pb2 as spb


def test_a_cron_schedule_request_carries_the_job_template() -> None:
    job = handler_job(
        "app.tasks:report", ["daily"], options=SubmitOptions("reports", 3, max_retries=0)
    )
    request = schedule_request("report", job, cron="0 6 * * 1-5", time_zone="Europe/Paris")
    assert (request.name, request.cron, request.time_zone) == (
        "report",
        "0 6 * * 1-5",
        "Europe/Paris",
    )
    assert request.interval_seconds == 0
    assert (request.queue_name, request.priority, request.max_retries) == ("reports", 3, 0)
    assert request.payload == job.payload
    assert request.missed == spb.MISSED_TICK_POLICY_SKIP


def test_an_interval_in_seconds_or_as_a_timedelta() -> None:
    job = command_job(["true"])
    assert schedule_request("a", job, every=30).interval_seconds == 30
    assert schedule_request("a", job, every=timedelta(minutes=2)).interval_seconds == 120
    once = schedule_request("a", job, every=5, missed="once")
    assert once.missed == spb.MISSED_TICK_POLICY_ONCE
    assert not once.HasField("max_retries")  # the queue's


@pytest.mark.parametrize(
    ("kwargs", "options", "message"),
    [
        ({}, SubmitOptions(), "not both and not neither"),
        ({"cron": "* * * * *", "every": 5}, SubmitOptions(), "not both"),
        ({"every": 5, "time_zone": "UTC"}, SubmitOptions(), "cron schedules only"),
        ({"every": 1.5}, SubmitOptions(), "whole seconds"),
        ({"every": 0}, SubmitOptions(), "at least 1"),
        ({"every": 5}, SubmitOptions(delay=3), "no delay"),
        ({"every": 5}, SubmitOptions(idempotency_key="k"), "no idempotency key"),
        ({"every": 5, "missed": "all"}, SubmitOptions(), "'skip' or 'once'"),
    ],
)
def test_what_has_no_meaning_for_a_schedule_is_refused(
    kwargs: dict[str, object], options: SubmitOptions, message: str
) -> None:
    with pytest.raises(InvalidJob, match=message):
        schedule_request("a", command_job(["true"], options=options), **kwargs)  # type: ignore[arg-type]


def test_schedule_info_from_the_reply() -> None:
    message = spb.Schedule(
        name="ping",
        interval_seconds=30,
        time_zone="UTC",
        queue_name="checks",
        payload=b"{}",
        missed=spb.MISSED_TICK_POLICY_ONCE,
        paused=True,
    )
    when = datetime(2026, 1, 1, tzinfo=UTC)
    message.next_run_at.FromDatetime(when)
    message.upcoming.add().FromDatetime(when)
    info = ScheduleInfo.from_proto(message)
    assert (info.name, info.cron, info.every, info.missed, info.paused) == (
        "ping",
        None,
        30,
        "once",
        True,
    )
    assert info.max_retries is None
    assert info.next_run_at == when
    assert info.last_run_at is None
    assert info.upcoming == (when,)
