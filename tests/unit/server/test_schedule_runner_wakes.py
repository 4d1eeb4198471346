"""When the schedule runner runs again: at the next due tick when it comes before the loop's
interval, at once when a run stopped at its limit, else after the interval. A fake store and an
injected clock: nothing waits for real time but the event loop's own timer, asked for a few
milliseconds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from jobq.domain.records import Submitted
from jobq.domain.schedules import MissedPolicy, Schedule, TickPlan, Timing
from jobq.server.lifecycle import Lifecycle
from jobq.server.schedule_runner import ScheduleRunner

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


class FakeSchedules:
    """A store with `due` schedules due now and a next due time."""

    def __init__(self, due: int = 0, next_due: datetime | None = None) -> None:
        self.due = due
        self.next_due = next_due
        self.fired: list[TickPlan] = []
        self.asked = 0
        self.db_now = NOW

    async def schedule_fire_due(
        self, now: datetime, plan: Callable[[Schedule], TickPlan], job_id: UUID
    ) -> tuple[Schedule, TickPlan, Submitted | None] | None:
        if not self.due:
            return None
        self.due -= 1
        schedule = Schedule(
            name="s",
            timing=Timing(None, "UTC", 60),
            queue_name="default",
            payload=b"{}",
            priority=0,
            max_retries=None,
            missed=MissedPolicy.SKIP,
            paused=False,
            next_run_at=now,
            last_run_at=None,
            created_at=now,
            updated_at=now,
        )
        decided = plan(schedule)
        self.fired.append(decided)
        return schedule, decided, Submitted(job_id, now)

    async def schedules_next_due(self) -> tuple[datetime | None, datetime]:
        self.asked += 1
        return (self.db_now if self.due else self.next_due), self.db_now


def _runner(store: FakeSchedules, **kwargs: object) -> ScheduleRunner:
    return ScheduleRunner(store, Lifecycle(), clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]


async def test_a_run_plans_with_the_clock_and_wakes_the_dispatcher_once() -> None:
    store = FakeSchedules(due=3)
    woken: list[bool] = []
    runner = ScheduleRunner(
        store,  # type: ignore[arg-type]
        Lifecycle(),
        clock=lambda: NOW,
        on_inserted=lambda: woken.append(True),
    )
    made = await runner.run_once()
    assert len(made) == 3
    assert woken == [True]
    assert [p.next_run_at for p in store.fired] == [NOW + timedelta(seconds=60)] * 3


async def test_a_run_that_reaches_its_limit_asks_for_another_at_once() -> None:
    store = FakeSchedules(due=5)
    runner = _runner(store, max_per_run=2)
    assert len(await runner.run_once()) == 2
    assert runner.loop._wake.is_set()
    assert store.due == 3


async def test_the_loop_wakes_at_the_next_due_tick() -> None:
    store = FakeSchedules(next_due=NOW + timedelta(milliseconds=20))
    runner = _runner(store, interval_s=3600)
    runner.start()
    try:
        async with asyncio.timeout(5):  # the first run found nothing due and armed the timer
            while runner._timer is None:
                await asyncio.sleep(0)
        store.due = 1
        async with asyncio.timeout(5):  # woken by the timer, not the hour-long interval
            while not store.fired:
                await asyncio.sleep(0.005)
    finally:
        await runner.stop()


async def test_nothing_due_costs_one_query_and_no_transaction() -> None:
    store = FakeSchedules(next_due=NOW + timedelta(seconds=3))
    runner = _runner(store, interval_s=10)
    assert await runner.run_once() == []
    assert store.asked == 1
    assert store.fired == []


async def test_no_timer_when_the_next_tick_is_beyond_the_interval() -> None:
    store = FakeSchedules(next_due=NOW + timedelta(hours=2))
    runner = _runner(store, interval_s=10)
    await runner.run_once()
    runner._arm_timer()
    assert runner._timer is None
    store.next_due = NOW + timedelta(seconds=3)
    await runner.run_once()
    runner._arm_timer()
    assert runner._timer is not None
    await runner.stop()
    assert runner._timer is None


async def test_without_a_clock_the_database_time_decides() -> None:
    store = FakeSchedules(due=1)
    db_now = store.db_now = NOW - timedelta(days=1)
    runner = ScheduleRunner(store, Lifecycle())  # type: ignore[arg-type]
    await runner.run_once()
    assert [p.enqueue for p in store.fired] == [db_now]
    assert store.fired[0].next_run_at == db_now + timedelta(seconds=60)
