"""The heartbeat monitor (SPEC §6): workers that stopped heartbeating are declared lost, and the
jobs they held are interrupted (WORKER_LOST).

An interruption is not the job's failure: the job goes back to PENDING at once with its
retry_count unchanged (retries are for jobs that fail), and its interruption count grows. A
poison job that kills every worker it runs on is stopped by that count: interrupted more often
than its queue's max_interruptions, it is dead-lettered (POISON) instead of looping forever.
(SPEC §4 had crash rescues consume retries; the issue on poison jobs changed that, so that
interruptions never take retries away from ordinary failures.) The rescue goes through the
JobStore's fenced interruption path: only the claim the lost worker held is interrupted, and a
late report from that worker for the old claim is rejected afterwards.

Safe with several replicas: marking workers lost skips rows another replica holds, and the
fenced failure applies each attempt once however many monitors read it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from jobq.domain.records import AttemptRef, Transition
from jobq.domain.states import Reason
from jobq.observability.logging_setup import get_logger
from jobq.server.lifecycle import Lifecycle
from jobq.server.service_loop import ServiceLoop
from jobq.storage.stores import JobStore, MaintenanceStore

log = get_logger("jobq.heartbeat_monitor")


@dataclass(frozen=True, slots=True)
class HeartbeatReport:
    """What one run did: the workers it declared lost and the claims it interrupted."""

    lost_workers: list[UUID] = field(default_factory=list)
    rescued_jobs: int = 0
    transitions: list[Transition] = field(default_factory=list)
    more: bool = False
    """A batch came back full: run again soon to work off the rest."""


class HeartbeatMonitor:
    """Declares silent workers lost and rescues their jobs, every `interval_s` seconds."""

    def __init__(
        self,
        maintenance: MaintenanceStore,
        jobs: JobStore,
        *,
        timeout_s: float,
        interval_s: float,
        batch_limit: int = 1000,
        lifecycle: Lifecycle,
        clock: Callable[[], datetime] | None = None,
        probe: Callable[[], Awaitable[object]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        on_lost: Callable[[int], object] | None = None,
    ) -> None:
        """`clock` gives the database-side `now` of the lost-worker queries (None: the
        database's own); `monotonic` times the grace periods of this process's own contact
        (tests advance it instead of sleeping). `on_lost(n)` hears how many workers a run
        declared lost (the jq_workers_lost_total counter): each worker once, by the one
        replica whose update marked it OFFLINE."""
        self._on_lost = on_lost
        self._maintenance = maintenance
        self._monotonic = monotonic
        self._probe = probe
        self._contact_since: float | None = None
        self._last_tick: float | None = None
        self._interval_s = float(interval_s)
        self._jobs = jobs
        self._timeout_s = float(timeout_s)
        self._batch_limit = batch_limit
        self._lifecycle = lifecycle
        self._clock = clock
        self._message = f"worker lost: no heartbeat for {self._timeout_s:g}s"
        self._detail = f"no heartbeat for {self._timeout_s:g}s"
        self.loop = ServiceLoop("heartbeat_monitor", interval_s, self._tick)

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    async def run_once(self) -> HeartbeatReport:
        """Mark silent workers OFFLINE, then interrupt the claims they held (WORKER_LOST: back
        to PENDING, or POISON), and those of workers an earlier run marked but did not
        finish."""
        now = self._clock() if self._clock is not None else None
        lost = await self._maintenance.workers_mark_lost(self._timeout_s, now, self._batch_limit)
        if lost and self._on_lost is not None:
            self._on_lost(len(lost))
        held: list[AttemptRef] = []
        for worker_id in lost:
            refs = await self._jobs.jobs_held_by_worker(worker_id)
            log.warning(
                self._message, action="worker.lost", worker_id=str(worker_id), held_jobs=len(refs)
            )
            held.extend(refs)
        transitions = await self._rescue(held)
        # After this run's own rescue, whatever OFFLINE workers still hold was left behind by a
        # run that stopped between the two steps (crash, cancellation, database error).
        leftovers = await self._maintenance.jobs_held_by_offline_workers(
            self._timeout_s, now, self._batch_limit
        )
        if leftovers:
            log.warning(
                "rescuing jobs still held by offline workers",
                action="worker.lost_leftovers",
                jobs=len(leftovers),
            )
            transitions += await self._rescue(leftovers)
        return HeartbeatReport(
            lost_workers=lost,
            rescued_jobs=len({t.job_id for t in transitions}),
            transitions=transitions,
            more=len(lost) >= self._batch_limit or len(leftovers) >= self._batch_limit,
        )

    async def _rescue(self, held: Sequence[AttemptRef]) -> list[Transition]:
        """Interrupt the claims (WORKER_LOST) in batches and publish what was applied. Claims
        another replica rescued first are rejected by the fencing and simply not counted.
        (An interruption needs no clock: it has no backoff.)"""
        transitions: list[Transition] = []
        for start in range(0, len(held), self._batch_limit):
            batch = held[start : start + self._batch_limit]
            with self._lifecycle.write() as changes:
                applied = await self._jobs.jobs_interrupt(batch, Reason.WORKER_LOST, self._detail)
                changes.applied(applied)
            transitions.extend(applied)
        return transitions

    async def _tick(self) -> None:
        # Workers cannot heartbeat while this server cannot reach the database, nor while it
        # was down. Declaring them lost at once would retry every running job for nothing, so
        # the loop first needs a heartbeat timeout's worth of unbroken contact: after start-up
        # and after every failed run (an outage).
        try:
            if self._probe is not None:
                await self._probe()
        except Exception:
            self._contact_since = None
            raise
        now = self._monotonic()
        # A tick far later than planned: this process was paused (SIGSTOP, a VM freeze) or
        # starved, and heard no heartbeats meanwhile; its workers were not silent, it was
        # deaf. The same grace as after an outage: they heartbeat again before any is judged.
        last, self._last_tick = self._last_tick, now
        if last is not None and now - last > self._interval_s + max(self._interval_s, 1.0):
            self._contact_since = None
        if self._contact_since is None:
            self._contact_since = now
        if now - self._contact_since < self._timeout_s:
            return
        try:
            report = await self.run_once()
        except Exception:
            self._contact_since = None
            raise
        if report.more:
            self.loop.wake()
