"""The schedule runner: enqueues the job of each due schedule tick (README "Schedules").

Every jq-server replica runs it. A run takes the due schedules one at a time, each in its own
transaction (PgScheduleStore.schedule_fire_due): lock it (FOR UPDATE SKIP LOCKED, so replicas
share the due schedules instead of queueing behind each other), decide its tick by the
schedule's missed-tick policy (domain/schedules.py), insert that tick's job with its SUBMITTED
event unless the tick has its job already (a unique index on (schedule, tick) decides, not a
read), and move next_run_at on. A tick thus enqueues at most one job whatever the replicas,
restarts or retries, and a committed tick is never repeated.

Time is PostgreSQL's (read with the next due time, at no extra cost), not each replica's own
clock: replicas whose clocks differ still agree on which ticks are due and how late they are.
Tests inject a clock, or pass `now` to run_once.

The inserted job is published on the lifecycle stream as a submit's is (metrics, logs, Kafka
capture) and wakes this replica's dispatcher; the statement notifies the other replicas'.

Cost (queries of PostgreSQL; nothing of it touches submit, claim or complete): a run asks
when the next schedule is due (one read of a small partial index), and fires only when one is.
The loop sleeps until that time, or `interval_s` (10 s) at most, which is how soon a schedule
created or resumed on another replica is seen. With no schedule: one query per 10 s per
replica. Per tick fired: the transaction (BEGIN, lock, the insert statement, COMMIT) and one
more next-due read, so six round trips with the wake-up's read; a replica that finds the tick
already taken by another spends one or two reads.
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

_RETRY_HELD_S = 0.05
"""The wait before looking again at a due schedule another replica holds."""


class ScheduleRunner:
    """Enqueues due schedule ticks; `run_once(now)` is one pass, as the loop runs it."""

    def __init__(
        self,
        schedules: ScheduleStore,
        lifecycle: Lifecycle,
        *,
        on_inserted: Callable[[], None] = lambda: None,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], datetime] | None = None,
        max_per_run: int = MAX_PER_RUN,
    ) -> None:
        self._schedules = schedules
        self._lifecycle = lifecycle
        self._on_inserted = on_inserted
        self._clock = clock
        self._max_per_run = max_per_run
        self._interval_s = interval_s
        self._timer: asyncio.TimerHandle | None = None
        self._next_due: datetime | None = None
        self._read_at = datetime.now(UTC)
        """The time (the clock's, else the database's) when _next_due was read."""
        self._idle_run = True
        # A failed run (PostgreSQL away) is retried after 1 s, doubling up to the interval: a
        # tick is late by no more than the outage plus that.
        self.loop = ServiceLoop(
            "schedules",
            interval_s,
            self._tick,
            retry_s=min(1.0, interval_s),
            max_retry_s=interval_s,
        )

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        self._cancel_timer()
        await self.loop.stop()

    def wake(self) -> None:
        """A schedule was created or resumed here: look at the due times again now."""
        self.loop.wake()

    async def run_once(self, now: datetime | None = None) -> list[Transition]:
        """Enqueue the job of every schedule due at `now` (default: the injected clock, else the
        database's time, which every replica shares), one schedule per transaction; returns the
        SUBMITTED transitions of the jobs it inserted.

        It asks when the next schedule is due first, and again after each one it fired: a run
        with nothing due is one index read, and no transaction."""
        inserted: list[Transition] = []
        due, db_now = await self._schedules.schedules_next_due()
        at = now if now is not None else self._now(db_now)
        fired_any = False
        for _ in range(self._max_per_run):
            if due is None or due > at:
                break
            with self._lifecycle.write() as changes:
                fired = await self._schedules.schedule_fire_due(
                    at, lambda schedule: _plan(schedule, at), uuid7()
                )
                if fired is None:
                    break  # the due ones are another replica's right now
                schedule, plan, submitted = fired
                if submitted is not None:
                    transition = Transition.submitted(
                        submitted.job_id, schedule.queue_name, submitted.created_at
                    )
                    changes.applied([transition])
                    inserted.append(transition)
            fired_any = True
            _log_tick(schedule, plan, submitted is not None)
            due, db_now = await self._schedules.schedules_next_due()
        else:
            self.loop.wake()  # more may be due: go on after yielding to the event loop
        self._next_due, self._read_at = due, self._now(db_now)
        self._idle_run = not fired_any
        if inserted:
            self._on_inserted()
        return inserted

    async def _tick(self) -> None:
        await self.run_once()
        self._arm_timer()

    def _arm_timer(self) -> None:
        """Wake the loop at the next due tick when it comes before the loop's interval."""
        self._cancel_timer()
        due = self._next_due
        if due is None:
            return
        delay = (due - self._read_at).total_seconds() + _WAKE_SLACK_S
        if self._idle_run:
            # Due, yet nothing fired: another replica holds it and commits in a moment. Not a
            # tight loop meanwhile.
            delay = max(delay, _RETRY_HELD_S)
        if delay < self._interval_s:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(delay, 0.0), self.loop.wake)

    def _now(self, db_now: datetime) -> datetime:
        return self._clock() if self._clock is not None else db_now

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
