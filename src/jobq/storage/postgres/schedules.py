"""PostgreSQL ScheduleStore: schedules (db/migrations/V19) and the enqueue of their ticks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import asyncpg

from jobq.domain.errors import QueueNotFound, ScheduleAlreadyExists, ScheduleNotFound
from jobq.domain.records import Submitted
from jobq.domain.schedules import NewSchedule, Schedule, TickPlan
from jobq.domain.shards import shard_of
from jobq.storage.postgres.rows import schedule_from_row
from jobq.storage.queries import query


class PgScheduleStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def schedule_create(self, schedule: NewSchedule, next_run_at: datetime) -> Schedule:
        """Store a new schedule whose first tick is `next_run_at`. ScheduleAlreadyExists when
        the name is taken, QueueNotFound when its queue does not exist."""
        timing = schedule.timing
        try:
            row = await self._pool.fetchrow(
                query("schedule_create"),
                schedule.name,
                timing.cron,
                timing.time_zone,
                timing.interval_seconds,
                schedule.queue_name,
                schedule.payload,
                schedule.priority,
                schedule.max_retries,
                schedule.missed.value,
                next_run_at,
            )
        except asyncpg.ForeignKeyViolationError:
            raise QueueNotFound(schedule.queue_name) from None
        if row is None:
            raise ScheduleAlreadyExists(schedule.name)
        return schedule_from_row(row)

    async def schedule_get(self, name: str) -> Schedule:
        row = await self._pool.fetchrow(query("schedule_get"), name)
        if row is None:
            raise ScheduleNotFound(name)
        return schedule_from_row(row)

    async def schedule_list(self) -> list[Schedule]:
        return [schedule_from_row(row) for row in await self._pool.fetch(query("schedule_list"))]

    async def schedule_delete(self, name: str) -> None:
        if await self._pool.fetchval(query("schedule_delete"), name) is None:
            raise ScheduleNotFound(name)

    async def schedule_pause(self, name: str) -> Schedule:
        row = await self._pool.fetchrow(query("schedule_set_paused"), name, True, None)
        if row is None:
            raise ScheduleNotFound(name)
        return schedule_from_row(row)

    async def schedule_resume(
        self, name: str, next_run_at: Callable[[Schedule], datetime]
    ) -> Schedule:
        """Resume a paused schedule with the next tick `next_run_at` computes from it (under
        its lock, so a concurrent resume or fire cannot interleave); an active one is returned
        as it is."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(query("schedule_lock"), name)
            if row is None:
                raise ScheduleNotFound(name)
            current = schedule_from_row(row)
            if not current.paused:
                return current
            row = await conn.fetchrow(
                query("schedule_set_paused"), name, False, next_run_at(current)
            )
            assert row is not None
            return schedule_from_row(row)

    async def schedule_fire_due(
        self, now: datetime, plan: Callable[[Schedule], TickPlan], job_id: UUID
    ) -> tuple[Schedule, TickPlan, Submitted | None] | None:
        """In one transaction: lock the most overdue schedule due at `now` that no other
        transaction holds, enqueue the job its `plan` names (id `job_id`) with its SUBMITTED
        event unless that tick has its job already, and move it on to the plan's next tick.
        Returns the schedule as it was, the plan, and the job (None: none written); None when
        no schedule is due."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(query("schedule_lock_due"), now)
            if row is None:
                return None
            schedule = schedule_from_row(row)
            decided = plan(schedule)
            written = await conn.fetchrow(
                query("schedule_fire"),
                schedule.name,
                decided.enqueue,
                job_id,
                decided.next_run_at,
                shard_of(job_id),
            )
        submitted = None if written is None else Submitted(written["job_id"], written["created_at"])
        return schedule, decided, submitted

    async def schedules_next_due(self) -> tuple[datetime | None, datetime]:
        """When the next active schedule falls due (None: there is none), and the database's
        current time."""
        row = await self._pool.fetchrow(query("schedules_next_due"))
        assert row is not None
        return row["due"], row["now"]
