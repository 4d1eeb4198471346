"""The heartbeat monitor (SPEC §6): workers that stopped heartbeating are declared lost, and the
jobs they held are failed (WORKER_LOST) through the retry policy.

A crash rescue is a retry like any failure, so a poison job that kills every worker it runs on
ends DEAD_LETTERED after max_retries instead of looping forever. The rescue goes through the
JobStore's fenced failure path: only the attempt the lost worker held is failed, and a late
report from that worker for the old attempt is rejected afterwards.

Safe with several replicas: marking workers lost skips rows another replica holds, and the
fenced failure applies each attempt once however many monitors read it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from jobq.domain.records import AttemptRef, Failure, Transition
from jobq.domain.retry import RetryPolicy
from jobq.domain.states import Reason
from jobq.observability.logging_setup import get_logger
from jobq.server.service_loop import ServiceLoop
from jobq.storage.stores import JobStore, MaintenanceStore

log = get_logger("jobq.heartbeat_monitor")

OnTransitions = Callable[[list[Transition]], None]


@dataclass(frozen=True, slots=True)
class HeartbeatReport:
    """What one run did: the workers it declared lost and the attempts it failed."""

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
        policy: RetryPolicy,
        *,
        timeout_s: float,
        interval_s: float,
        batch_limit: int = 1000,
        on_transitions: OnTransitions | None = None,
        clock: Callable[[], datetime] | None = None,
        probe: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._maintenance = maintenance
        self._probe = probe
        self._contact_since: float | None = None
        self._jobs = jobs
        self._policy = policy
        self._timeout_s = float(timeout_s)
        self._batch_limit = batch_limit
        self._on_transitions = on_transitions
        self._clock = clock
        self._message = f"worker lost: no heartbeat for {self._timeout_s:g}s"
        self.loop = ServiceLoop("heartbeat_monitor", interval_s, self._tick)

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    async def run_once(self) -> HeartbeatReport:
        """Mark silent workers OFFLINE, then fail the attempts they held (WORKER_LOST → retry
        or dead letter), and those of workers an earlier run marked but did not finish."""
        now = self._clock() if self._clock is not None else None
        lost = await self._maintenance.workers_mark_lost(self._timeout_s, now, self._batch_limit)
        held: list[AttemptRef] = []
        for worker_id in lost:
            refs = await self._jobs.jobs_held_by_worker(worker_id)
            log.warning(
                self._message, action="worker.lost", worker_id=str(worker_id), held_jobs=len(refs)
            )
            held.extend(refs)
        transitions = await self._rescue(held, now)
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
            transitions += await self._rescue(leftovers, now)
        return HeartbeatReport(
            lost_workers=lost,
            rescued_jobs=sum(1 for t in transitions if t.reason is Reason.WORKER_LOST),
            transitions=transitions,
            more=len(lost) >= self._batch_limit or len(leftovers) >= self._batch_limit,
        )

    async def _rescue(self, held: Sequence[AttemptRef], now: datetime | None) -> list[Transition]:
        """Fail the attempts (WORKER_LOST) in batches and publish what was applied. Attempts
        another replica rescued first are rejected by the fencing and simply not counted."""
        transitions: list[Transition] = []
        for start in range(0, len(held), self._batch_limit):
            failures = [
                Failure(ref.job_id, ref.attempt, ref.worker_id, self._message, Reason.WORKER_LOST)
                for ref in held[start : start + self._batch_limit]
            ]
            outcome = await self._jobs.jobs_fail(failures, self._policy, now)
            if outcome.transitions and self._on_transitions is not None:
                self._on_transitions(list(outcome.transitions))
            transitions.extend(outcome.transitions)
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
        now = time.monotonic()
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
