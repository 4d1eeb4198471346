"""Schedules in the SDK: the request that creates one, and what the server says of one.

    with jobq.Client() as client:
        client.create_schedule("nightly", handler_job(report), cron="0 3 * * *",
                               time_zone="Europe/Paris")
        client.create_schedule("ping", command_job(["ping", "-c1", "db"]), every=30)

The job template is a `JobSpec` (`handler_job`, `command_job`, or a task's `.job()`): its
payload, queue, priority and max_retries; a delay, time or idempotency key has no meaning for a
job that a tick creates, and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from google.protobuf.timestamp_pb2 import Timestamp

from jobq.client.job_spec import InvalidJob, JobSpec
from jobq.rpc._gen import schedules_pb2 as spb
from jobq.rpc.convert import from_timestamp

__all__ = ["MissedTicks", "ScheduleInfo", "schedule_request"]

MissedTicks = Literal["skip", "once"]
"""What a scheduler that comes back after downtime enqueues for the ticks it missed: nothing
(`skip`, the default), or one job for them (`once`). README "Schedules"."""

_MISSED: dict[str, spb.MissedTickPolicy] = {
    "skip": spb.MISSED_TICK_POLICY_SKIP,
    "once": spb.MISSED_TICK_POLICY_ONCE,
}
_MISSED_NAME = {number: name for name, number in _MISSED.items()}


def schedule_request(
    name: str,
    job: JobSpec,
    *,
    cron: str | None = None,
    time_zone: str | None = None,
    every: float | timedelta | None = None,
    missed: MissedTicks = "skip",
) -> spb.CreateScheduleRequest:
    """The CreateScheduleRequest of a schedule: `cron` (five fields, read in `time_zone`,
    default UTC) or `every` (seconds, whole, at least 1), not both."""
    if (cron is None) == (every is None):
        raise InvalidJob("give cron or every, not both and not neither")
    if time_zone is not None and cron is None:
        raise InvalidJob("time_zone applies to cron schedules only")
    options = job.options
    if options.delay is not None or options.not_before is not None:
        raise InvalidJob("a scheduled job runs at its tick: give it no delay or not_before")
    if options.idempotency_key is not None:
        raise InvalidJob("a scheduled job gets no idempotency key (each tick makes one job)")
    if missed not in _MISSED:
        raise InvalidJob(f"missed must be 'skip' or 'once', got {missed!r}")
    request = spb.CreateScheduleRequest(
        name=name,
        cron=cron or "",
        time_zone=time_zone or "",
        interval_seconds=_whole_seconds(every) if every is not None else 0,
        queue_name=options.queue,
        payload=job.payload,
        priority=options.priority,
        missed=_MISSED[missed],
    )
    if options.max_retries is not None:
        request.max_retries = options.max_retries
    return request


def _whole_seconds(every: float | timedelta) -> int:
    seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
    if seconds != int(seconds) or seconds < 1:
        raise InvalidJob(f"every must be whole seconds, at least 1, got {seconds:g}")
    return int(seconds)


def _time(message: spb.Schedule, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    stamp = getattr(message, name)
    assert isinstance(stamp, Timestamp)
    return from_timestamp(stamp)


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as the server last reported it; times are UTC."""

    name: str
    cron: str | None
    time_zone: str
    every: int | None
    """Seconds between ticks; None for a cron schedule."""
    queue_name: str
    payload: bytes
    priority: int
    max_retries: int | None
    missed: MissedTicks
    paused: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    created_at: datetime | None
    upcoming: tuple[datetime, ...]
    """The next run times (get_schedule only)."""

    @classmethod
    def from_proto(cls, message: spb.Schedule) -> ScheduleInfo:
        return cls(
            name=message.name,
            cron=message.cron or None,
            time_zone=message.time_zone,
            every=message.interval_seconds or None,
            queue_name=message.queue_name,
            payload=message.payload,
            priority=message.priority,
            max_retries=message.max_retries if message.HasField("max_retries") else None,
            missed="once" if _MISSED_NAME.get(message.missed) == "once" else "skip",
            paused=message.paused,
            next_run_at=_time(message, "next_run_at"),
            last_run_at=_time(message, "last_run_at"),
            created_at=_time(message, "created_at"),
            upcoming=tuple(from_timestamp(stamp) for stamp in message.upcoming),
        )
