"""The schedule runner against a real database: one job per tick, whatever the replicas,
restarts and downtime (README "Schedules").

Time is the `now` each test passes to run_once (and to the store when it creates a schedule):
no test waits for a tick.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from support.payloads import job_payload

from jobq.domain.errors import QueueNotFound, ScheduleAlreadyExists, ScheduleNotFound
from jobq.domain.ids import uuid7
from jobq.domain.records import NewJob, Transition
from jobq.domain.schedules import MissedPolicy, NewSchedule, Schedule, TickPlan, Timing
from jobq.domain.shards import shard_of
from jobq.domain.states import JobStatus, Reason
from jobq.server.lifecycle import Lifecycle
from jobq.server.schedule_runner import ScheduleRunner
from jobq.storage.postgres.job_events import PgJobEventStore
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.queues import PgQueueStore
from jobq.storage.postgres.schedules import PgScheduleStore
from jobq.storage.queries import query

T0 = datetime(2026, 3, 28, 12, 0, 0, 250_000, tzinfo=UTC)
"""Creation time of the tests' schedules (a Saturday; Paris changes to summer time the next
night)."""

EVERY_MINUTE = Timing("* * * * *", "UTC", None)


def _every(seconds: int) -> Timing:
    return Timing(None, "UTC", seconds)


async def _create(
    store: PgScheduleStore,
    name: str = "tick",
    timing: Timing | None = None,
    *,
    missed: MissedPolicy = MissedPolicy.SKIP,
    queue: str = "default",
    now: datetime = T0,
) -> datetime:
    """Create a schedule at `now`; returns its first tick."""
    timing = timing or _every(60)
    first = timing.first_after(now)
    await store.schedule_create(
        NewSchedule(name, timing, queue, job_payload(name), priority=3, missed=missed), first
    )
    return first


def _runner(pool: asyncpg.Pool, lifecycle: Lifecycle | None = None) -> ScheduleRunner:
    return ScheduleRunner(PgScheduleStore(pool), lifecycle or Lifecycle())


async def _ticks(pool: asyncpg.Pool, name: str | None = None) -> list[tuple[str, datetime]]:
    """(schedule, tick) of every scheduled job, in tick order."""
    rows = await pool.fetch(
        "SELECT schedule_name, schedule_tick FROM jobs WHERE schedule_name IS NOT NULL"
        " AND ($1::text IS NULL OR schedule_name = $1) ORDER BY schedule_tick, schedule_name",
        name,
    )
    return [(row["schedule_name"], row["schedule_tick"]) for row in rows]


async def test_one_job_per_tick_made_as_a_submit_makes_it(pool: asyncpg.Pool) -> None:
    store = PgScheduleStore(pool)
    first = await _create(store)
    assert first == T0 + timedelta(seconds=60)
    published: list[Transition] = []
    lifecycle = Lifecycle()
    lifecycle.subscribe(published.extend)
    woken: list[bool] = []
    runner = ScheduleRunner(store, lifecycle, on_inserted=lambda: woken.append(True))

    assert await runner.run_once(first - timedelta(milliseconds=1)) == []
    inserted = await runner.run_once(first + timedelta(milliseconds=5))
    assert len(inserted) == 1
    assert woken == [True]
    assert await runner.run_once(first + timedelta(seconds=1)) == []  # the tick is done

    job = await PgJobStore(pool).job_get(inserted[0].job_id)
    assert (job.status, job.queue_name, job.priority) == (JobStatus.PENDING, "default", 3)
    assert job.schedule_name == "tick"
    assert job.payload == job_payload("tick")
    assert job.max_retries == 3  # the queue's, as a submit without one gets
    events = await PgJobEventStore(pool).job_events_list(job.job_id)
    assert [(e.to_status, e.reason) for e in events] == [(JobStatus.PENDING, Reason.SUBMITTED)]
    assert [(t.job_id, t.reason) for t in published] == [(job.job_id, Reason.SUBMITTED)]

    schedule = await store.schedule_get("tick")
    assert schedule.next_run_at == first + timedelta(seconds=60)
    assert schedule.last_run_at == first
    await runner.run_once(first + timedelta(seconds=60))
    assert await _ticks(pool) == [("tick", first), ("tick", first + timedelta(seconds=60))]


async def test_two_replicas_racing_make_one_job_per_tick(
    replicas: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    one, two = replicas
    names = [f"s{i}" for i in range(8)]
    for name in names:
        await _create(PgScheduleStore(one), name, _every(1))
    first, second = _runner(one), _runner(two)
    now = T0
    for _ in range(15):
        now += timedelta(seconds=1)
        made = await asyncio.gather(first.run_once(now), second.run_once(now))
        assert sum(len(m) for m in made) == len(names)
    ticks = await _ticks(one)
    assert len(ticks) == len(set(ticks)) == 15 * len(names)
    expected = {(n, T0 + timedelta(seconds=k)) for n in names for k in range(1, 16)}
    assert set(ticks) == expected


async def test_the_unique_index_refuses_a_second_job_for_a_tick(pool: asyncpg.Pool) -> None:
    """Even a writer that got past the lock (a stale plan) cannot enqueue a tick twice: the
    tick's row in job_schedule_ticks (V24) is the one a second writer collides with."""
    store = PgScheduleStore(pool)
    first = await _create(store)
    fire = query("schedule_fire")
    later = first + timedelta(seconds=60)
    one, two = uuid7(), uuid7()
    assert await pool.fetchrow(fire, "tick", first, one, later, shard_of(one)) is not None
    assert await pool.fetchrow(fire, "tick", first, two, later, shard_of(two)) is None
    assert await _ticks(pool) == [("tick", first)]


async def test_a_restarted_scheduler_does_not_repeat_a_tick(pool: asyncpg.Pool) -> None:
    first = await _create(PgScheduleStore(pool))
    assert len(await _runner(pool).run_once(first)) == 1
    restarted = _runner(pool)  # a new process: nothing in memory
    assert await restarted.run_once(first + timedelta(seconds=30)) == []
    assert len(await restarted.run_once(first + timedelta(seconds=60))) == 1
    assert await _ticks(pool) == [("tick", first), ("tick", first + timedelta(seconds=60))]


async def test_a_plan_for_a_tick_already_enqueued_writes_no_job(pool: asyncpg.Pool) -> None:
    """A tick committed before a crash, and the schedule set back (a restore, a second writer
    with a stale next_run_at): the runner moves it on without a second job."""
    store = PgScheduleStore(pool)
    first = await _create(store)
    await _runner(pool).run_once(first)
    await pool.execute("UPDATE schedules SET next_run_at = $1", first)
    assert await _runner(pool).run_once(first + timedelta(seconds=1)) == []
    assert (await store.schedule_get("tick")).next_run_at == first + timedelta(seconds=60)
    assert await _ticks(pool) == [("tick", first)]


async def test_downtime_skip_enqueues_nothing_for_missed_ticks(pool: asyncpg.Pool) -> None:
    store = PgScheduleStore(pool)
    first = await _create(store, "skip", EVERY_MINUTE, missed=MissedPolicy.SKIP)
    back = first + timedelta(minutes=10, seconds=20)
    assert await _runner(pool).run_once(back) == []
    schedule = await store.schedule_get("skip")
    assert schedule.next_run_at == first + timedelta(minutes=11)  # the next future tick
    assert len(await _runner(pool).run_once(first + timedelta(minutes=11, seconds=1))) == 1
    assert await _ticks(pool) == [("skip", first + timedelta(minutes=11))]


async def test_downtime_once_enqueues_one_job_for_the_missed_ticks(pool: asyncpg.Pool) -> None:
    store = PgScheduleStore(pool)
    first = await _create(store, "once", EVERY_MINUTE, missed=MissedPolicy.ONCE)
    back = first + timedelta(minutes=10, seconds=20)
    assert len(await _runner(pool).run_once(back)) == 1
    assert await _runner(pool).run_once(back + timedelta(seconds=1)) == []
    schedule = await store.schedule_get("once")
    assert schedule.next_run_at == first + timedelta(minutes=11)
    await _runner(pool).run_once(first + timedelta(minutes=11))
    # One job for the ten missed ticks (the latest of them), then on as usual.
    assert await _ticks(pool) == [
        ("once", first + timedelta(minutes=10)),
        ("once", first + timedelta(minutes=11)),
    ]


async def test_a_daily_tick_reached_late_is_skipped_or_run_once(pool: asyncpg.Pool) -> None:
    store = PgScheduleStore(pool)
    daily = Timing("0 9 * * *", "Europe/Paris", None)
    skip = await _create(store, "daily-skip", daily, missed=MissedPolicy.SKIP)
    once = await _create(store, "daily-once", daily, missed=MissedPolicy.ONCE)
    assert skip == once == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)  # 09:00 summer time
    two_hours_late = skip + timedelta(hours=2)
    made = await _runner(pool).run_once(two_hours_late)
    assert [t.queue_name for t in made] == ["default"]
    assert await _ticks(pool) == [("daily-once", skip)]
    for name in ("daily-skip", "daily-once"):
        assert (await store.schedule_get(name)).next_run_at == skip + timedelta(days=1)


async def test_a_paused_schedule_enqueues_nothing_and_resumes_in_the_future(
    pool: asyncpg.Pool,
) -> None:
    store = PgScheduleStore(pool)
    first = await _create(store, timing=_every(10))
    paused = await store.schedule_pause("tick")
    assert paused.paused
    assert (await store.schedules_next_due())[0] is None
    assert await _runner(pool).run_once(first + timedelta(minutes=5)) == []
    now = first + timedelta(minutes=5, seconds=3)
    resumed = await store.schedule_resume(
        "tick", lambda current: current.timing.first_after(now, current.next_run_at)
    )
    # The first tick after now, in the schedule's own phase; nothing for the paused minutes.
    assert not resumed.paused
    assert resumed.next_run_at == first + timedelta(minutes=5, seconds=10)
    assert await _runner(pool).run_once(now) == []
    assert len(await _runner(pool).run_once(resumed.next_run_at)) == 1
    assert await _ticks(pool) == [("tick", resumed.next_run_at)]


async def test_a_deleted_schedule_enqueues_nothing_and_its_jobs_stay(pool: asyncpg.Pool) -> None:
    store = PgScheduleStore(pool)
    first = await _create(store)
    made = await _runner(pool).run_once(first)
    await store.schedule_delete("tick")
    with pytest.raises(ScheduleNotFound):
        await store.schedule_get("tick")
    with pytest.raises(ScheduleNotFound):
        await store.schedule_delete("tick")
    assert await _runner(pool).run_once(first + timedelta(hours=1)) == []
    job = await PgJobStore(pool).job_get(made[0].job_id)
    assert job.schedule_name == "tick"
    # Created again under the same name: a tick its predecessor enqueued is not enqueued again.
    await store.schedule_create(NewSchedule("tick", _every(60), "default", job_payload()), first)
    assert await _runner(pool).run_once(first) == []


async def test_creating_refuses_a_taken_name_and_an_unknown_queue(pool: asyncpg.Pool) -> None:
    store = PgScheduleStore(pool)
    await _create(store)
    with pytest.raises(ScheduleAlreadyExists):
        await _create(store)
    with pytest.raises(QueueNotFound):
        await _create(store, "other", queue="nope")
    assert [s.name for s in await store.schedule_list()] == ["tick"]


async def test_a_schedule_goes_with_its_queue(pool: asyncpg.Pool) -> None:
    queues, store = PgQueueStore(pool), PgScheduleStore(pool)
    await queues.queue_create("reports")
    await _create(store, "nightly", queue="reports")
    await queues.queue_delete("reports")
    assert await store.schedule_list() == []


async def test_each_due_schedule_commits_on_its_own(pool: asyncpg.Pool) -> None:
    """A plan that fails leaves the schedules fired before it committed."""
    store = PgScheduleStore(pool)
    await _create(store, "a", _every(5))
    await _create(store, "b", _every(7))
    now = T0 + timedelta(seconds=8)
    calls: list[str] = []

    def plan(schedule: Schedule) -> TickPlan:
        name = schedule.name
        calls.append(name)
        if name == "b":
            raise RuntimeError("boom")
        return TickPlan(T0 + timedelta(seconds=5), T0 + timedelta(seconds=10), False)

    assert await store.schedule_fire_due(now, plan, uuid7()) is not None
    with pytest.raises(RuntimeError):
        await store.schedule_fire_due(now, plan, uuid7())
    assert calls == ["a", "b"]
    assert await _ticks(pool) == [("a", T0 + timedelta(seconds=5))]
    assert (await store.schedule_get("b")).next_run_at == T0 + timedelta(seconds=7)


async def test_the_next_due_time_is_the_earliest_active_tick(pool: asyncpg.Pool) -> None:
    store = PgScheduleStore(pool)
    due, now = await store.schedules_next_due()
    assert due is None
    assert abs(now - datetime.now(UTC)) < timedelta(minutes=1)  # the database's clock
    await _create(store, "slow", _every(60))
    await _create(store, "fast", _every(5))
    assert (await store.schedules_next_due())[0] == T0 + timedelta(seconds=5)


async def test_a_scheduled_job_is_stored_as_a_submitted_one_is(pool: asyncpg.Pool) -> None:
    """schedule_fire writes the job and its event as jobs_insert does: the rows of a tick's job
    and of the same job submitted differ only in what identifies them. A column that jobs_insert
    starts to fill (or a default it stops relying on) fails this test until schedule_fire does
    the same."""
    store = PgScheduleStore(pool)
    first = await _create(store)
    [ticked] = await _runner(pool).run_once(first)
    schedule = await store.schedule_get("tick")
    submitted = uuid7()
    await PgJobStore(pool).jobs_insert(
        [NewJob(submitted, "default", schedule.payload, priority=schedule.priority)]
    )
    identity = {"job_id", "created_at", "updated_at", "schedule_name", "schedule_tick"}
    jobs = {
        row["job_id"]: {k: v for k, v in row.items() if k not in identity}
        for row in await pool.fetch("SELECT * FROM jobs")
    }
    assert jobs[ticked.job_id] == jobs[submitted]
    events = {
        row["job_id"]: {k: v for k, v in row.items() if k not in {"id", "job_id", "occurred_at"}}
        for row in await pool.fetch("SELECT * FROM job_events")
    }
    assert events[ticked.job_id] == events[submitted]
