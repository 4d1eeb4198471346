"""The schedule runner: enqueues the job of each due schedule tick (README "Schedules").

Every jq-server replica runs it. A run takes the due schedules one at a time, each in its own
transaction (PgScheduleStore.schedule_fire_due): lock it (FOR UPDATE SKIP LOCKED, so replicas
share the due schedules instead of queueing behind each other), decide its tick by the
schedule's missed-tick policy (domain/schedules.py), insert that tick's job with its SUBMITTED
event unless the tick has its job already (a unique index on (schedule, tick) decides, not a
read), and move next_run_at on. A tick thus enqueues at most one job whatever the replicas,
restarts or retries, and a committed tick is never repeated.

The inserted job is published on the lifecycle stream as a submit's is (metrics, logs, Kafka
capture) and wakes this replica's dispatcher; the statement notifies the other replicas'.

Cost: a run with nothing due is two cheap index reads (the due schedule, none; the next due
time). The loop sleeps until the next due tick, or `interval_s` at most (a schedule another
replica created, or resumed, is found by then), so with no schedule it costs two queries per
`interval_s`, and with schedules three per tick (lock and fire in one transaction, then the
next lock and the next due time). Nothing of it touches submit, claim or complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from jobq.domain.ids import uuid7
from jobq.domain.records import Transition
from jobq.domain.schedules import Schedule, TickPlan, plan_tick
from jobq.observability.logging_setup import get_logger
from jobq.server.lifecycle import Lifecycle
from jobq.server.service_loop import ServiceLoop
from jobq.storage.stores import ScheduleStore

log = get_logger("jobq.schedules")

DEFAULT_INTERVAL_S = 10.0
"""The longest the loop sleeps: how soon it sees a schedule created or resumed elsewhere."""

MAX_PER_RUN = 1000
"""Due schedules handled per run before the loop yields (and is woken again at once)."""

_WAKE_SLACK_S = 0.002
"""Wake a little after the due tick: the event loop's timer and the wall clock differ slightly,
and a run a hair early finds nothing due and must be woken again."""


class ScheduleRunner:
    """Enqueues due schedule ticks; `run_once(now)` is one pass, as the loop runs it."""

    def __init__(
        self,
        schedules: ScheduleStore,
        lifecycle: Lifecycle,
        *,
        on_inserted: Callable[[], None] = lambda: None,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_per_run: int = MAX_PER_RUN,
    ) -> None:
        self._schedules = schedules
        self._lifecycle = lifecycle
        self._on_inserted = on_inserted
        self._clock = clock
        self._max_per_run = max_per_run
        self._interval_s = interval_s
        self._timer: asyncio.TimerHandle | None = None
        self.loop = ServiceLoop("schedules", interval_s, self._tick)

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        self._cancel_timer()
        await self.loop.stop()

    def wake(self) -> None:
        """A schedule was created or resumed here: look at the due times again now."""
        self.loop.wake()

    async def run_once(self, now: datetime | None = None) -> list[Transition]:
        """Enqueue the job of every schedule due at `now` (default: the clock), one schedule
        per transaction; returns the SUBMITTED transitions of the jobs it inserted."""
        at = now if now is not None else self._clock()
        inserted: list[Transition] = []
        for _ in range(self._max_per_run):
            with self._lifecycle.write() as changes:
                fired = await self._schedules.schedule_fire_due(
                    at, lambda schedule: _plan(schedule, at), uuid7()
                )
                if fired is None:
                    break
                schedule, plan, submitted = fired
                if submitted is not None:
                    transition = Transition.submitted(
                        submitted.job_id, schedule.queue_name, submitted.created_at
                    )
                    changes.applied([transition])
                    inserted.append(transition)
            _log_tick(schedule, plan, submitted is not None)
        else:
            self.loop.wake()  # more may be due: go on after yielding to the event loop
        if inserted:
            self._on_inserted()
        return inserted

    async def _tick(self) -> None:
        await self.run_once()
        await self._sleep_until_next_due()

    async def _sleep_until_next_due(self) -> None:
        """Arm a wake-up for the next due tick when it comes before the loop's interval."""
        self._cancel_timer()
        due = await self._schedules.schedules_next_due()
        if due is None:
            return
        delay = (due - self._clock()).total_seconds() + _WAKE_SLACK_S
        if delay < self._interval_s:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(delay, 0.0), self.loop.wake)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _plan(schedule: Schedule, now: datetime) -> TickPlan:
    return plan_tick(schedule.timing, schedule.next_run_at, now, schedule.missed)


def _log_tick(schedule: Schedule, plan: TickPlan, enqueued: bool) -> None:
    if plan.enqueue is None:
        log.warning(
            "schedule missed its ticks; skipped to the next one",
            action="schedule.skipped",
            schedule=schedule.name,
            due=schedule.next_run_at.isoformat(),
            next_run_at=plan.next_run_at.isoformat(),
        )
    elif not enqueued:
        # Another replica (or an earlier run whose commit this one could not see) wrote it.
        log.info(
            "schedule tick already enqueued",
            action="schedule.duplicate_tick",
            schedule=schedule.name,
            tick=plan.enqueue.isoformat(),
        )
    elif plan.missed:
        log.warning(
            "schedule missed ticks; enqueued one job for them",
            action="schedule.caught_up",
            schedule=schedule.name,
            tick=plan.enqueue.isoformat(),
            next_run_at=plan.next_run_at.isoformat(),
        )
