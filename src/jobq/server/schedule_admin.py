"""AdminService's schedule RPCs: validate, store, and wake this replica's schedule runner.

Kept apart from admin_service.py, whose methods only delegate here. Every change is audited
(`schedule.create`, `schedule.delete`, `schedule.pause`, `schedule.resume`), refusals included.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from jobq.config import LimitsSettings
from jobq.domain.errors import InvalidArgument
from jobq.domain.schedules import (
    DEFAULT_MISSED,
    NewSchedule,
    Schedule,
    check_schedule_name,
    parse_timing,
)
from jobq.domain.validation import check_max_retries, check_priority, check_queue_name
from jobq.rpc import convert
from jobq.rpc._gen import schedules_pb2 as pb
from jobq.server.audit import AuditTrail
from jobq.server.submission import check_payload
from jobq.storage.stores import ScheduleStore

UPCOMING = 5
"""How many next run times GetSchedule shows."""


def new_schedule_from_request(
    request: pb.CreateScheduleRequest, limits: LimitsSettings
) -> NewSchedule:
    """A validated NewSchedule, or InvalidArgument naming what is wrong. The job template is
    checked as a SubmitJob's job is (payload shape and size, priority, max_retries), so a
    schedule cannot enqueue jobs that no worker could run."""
    name = check_schedule_name(request.name)
    timing = parse_timing(request.cron, request.time_zone, request.interval_seconds)
    queue = check_queue_name(request.queue_name or "default")
    check_priority(request.priority)
    check_payload(request.payload, limits)
    max_retries = (
        check_max_retries(request.max_retries) if request.HasField("max_retries") else None
    )
    missed = DEFAULT_MISSED
    if request.missed:
        policy = convert.missed_policy_from_proto(request.missed)
        if policy is None:
            raise InvalidArgument(f"unknown missed-tick policy {request.missed}")
        missed = policy
    return NewSchedule(
        name=name,
        timing=timing,
        queue_name=queue,
        payload=request.payload,
        priority=request.priority,
        max_retries=max_retries,
        missed=missed,
    )


class ScheduleAdmin:
    """The schedule RPCs' work; `on_change` wakes the schedule runner of this replica."""

    def __init__(
        self,
        store: ScheduleStore,
        audit: AuditTrail,
        limits: LimitsSettings,
        *,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._audit = audit
        self._limits = limits
        self._on_change = on_change
        self._clock = clock

    async def create(self, request: pb.CreateScheduleRequest) -> pb.CreateScheduleResponse:
        async with self._audit.recording("schedule.create", request.name) as note:
            new = new_schedule_from_request(request, self._limits)
            timing = new.timing
            note.detail = (
                f"cron={timing.cron!r}, time_zone={timing.time_zone}"
                if timing.cron is not None
                else f"interval_seconds={timing.interval_seconds}"
            ) + f", queue={new.queue_name}, missed={new.missed.value}"
            schedule = await self._store.schedule_create(new, timing.first_after(self._clock()))
        self._on_change()
        return pb.CreateScheduleResponse(schedule=convert.schedule_to_proto(schedule))

    async def list(self) -> pb.ListSchedulesResponse:
        schedules = await self._store.schedule_list()
        return pb.ListSchedulesResponse(
            schedules=[convert.schedule_to_proto(schedule) for schedule in schedules]
        )

    async def get(self, request: pb.GetScheduleRequest) -> pb.GetScheduleResponse:
        schedule = await self._store.schedule_get(check_schedule_name(request.name))
        upcoming = [] if schedule.paused else _upcoming(schedule)
        return pb.GetScheduleResponse(schedule=convert.schedule_to_proto(schedule, upcoming))

    async def delete(self, request: pb.DeleteScheduleRequest) -> pb.DeleteScheduleResponse:
        async with self._audit.recording("schedule.delete", request.name):
            await self._store.schedule_delete(check_schedule_name(request.name))
        return pb.DeleteScheduleResponse()

    async def pause(self, request: pb.PauseScheduleRequest) -> pb.PauseScheduleResponse:
        async with self._audit.recording("schedule.pause", request.name):
            schedule = await self._store.schedule_pause(check_schedule_name(request.name))
        return pb.PauseScheduleResponse(schedule=convert.schedule_to_proto(schedule))

    async def resume(self, request: pb.ResumeScheduleRequest) -> pb.ResumeScheduleResponse:
        async with self._audit.recording("schedule.resume", request.name):
            now = self._clock()
            schedule = await self._store.schedule_resume(
                check_schedule_name(request.name),
                # The first tick after now, in the schedule's own phase (an interval keeps its
                # ticks): those that fell due while it was paused are not enqueued.
                lambda current: current.timing.first_after(now, current.next_run_at),
            )
        self._on_change()
        return pb.ResumeScheduleResponse(schedule=convert.schedule_to_proto(schedule))


def _upcoming(schedule: Schedule) -> list[datetime]:
    return schedule.timing.upcoming(schedule.next_run_at, UPCOMING)
