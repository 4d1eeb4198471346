"""Demand-driven dispatch (SPEC §6): claim only what connected workers have free slots for.

The loop sleeps until something changes — a submit on this replica, a NOTIFY from another, a
freed worker slot, a newly connected worker — with `scheduler.interval_ms` only as the fallback
(for delayed jobs coming due, and anything a notification missed). Each cycle claims, per ready
worker, up to its free slots from the queues it serves, in one statement per worker.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from jobq.coordination.locker import Locker, job_lock_key
from jobq.domain.records import Assignment
from jobq.server.service_loop import ServiceLoop
from jobq.server.worker_registry import WorkerRegistry
from jobq.storage.stores import JobStore

OnAssigned = Callable[[Sequence[Assignment]], None]

MAX_RETRY_S = 5.0


class Dispatcher:
    """Claims jobs for the connected workers and hands them to their streams."""

    def __init__(
        self,
        jobs: JobStore,
        registry: WorkerRegistry,
        *,
        batch_size: int,
        interval_s: float,
        assignment_timeout_s: float,
        locker: Locker,
        on_assigned: OnAssigned,
        on_undeliverable: Callable[[Sequence[Assignment]], Awaitable[None]],
        on_cycle: Callable[[float], None] | None = None,
    ) -> None:
        self._jobs = jobs
        self._registry = registry
        self._batch_size = batch_size
        self._lock_ttl_ms = int(assignment_timeout_s * 1000)
        self._locker = locker
        self._on_assigned = on_assigned
        self._on_undeliverable = on_undeliverable
        self._on_cycle = on_cycle
        # A failed cycle (the database down) is retried after min(2 x interval, 5 s), doubling
        # up to 5 s: soon enough to resume dispatch promptly after an outage, whatever the
        # fallback interval (30 s in some deployments).
        self.loop = ServiceLoop(
            "dispatcher",
            interval_s,
            self._tick,
            retry_s=min(2 * interval_s, MAX_RETRY_S),
            max_retry_s=MAX_RETRY_S,
        )
        self._wake = self.loop.wake

    def wake(self) -> None:
        """Run a cycle as soon as possible (cheap; call it on every relevant change)."""
        self._wake()

    def wake_for_new_jobs(self) -> None:
        """New jobs only matter to a cycle if some connected worker has a free slot; without
        one, the slot's release will wake the dispatcher anyway."""
        if self._registry.any_free_slot():
            self._wake()

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    async def _tick(self) -> None:
        if await self.run_once():
            self._wake()  # some claim came back full: more may be waiting

    async def run_once(self) -> bool:
        """One cycle. True when some worker's claim came back full (more may be waiting)."""
        started = time.perf_counter()
        more = False
        for worker in self._registry.with_free_slots():
            want = min(worker.free_slots, self._batch_size)
            if want <= 0:
                continue
            assignments = await self._jobs.jobs_claim(
                worker.worker_id, worker.queues, want, incarnation=worker.incarnation
            )
            if not assignments:
                continue
            await self._locker.acquire_many(
                [job_lock_key(a.job.job_id) for a in assignments], self._lock_ttl_ms
            )
            if worker.closed:
                # The stream ended while we claimed and its clean-up has run: give them back.
                await self._on_undeliverable(assignments)
                continue
            worker.deliver(assignments)
            self._on_assigned(assignments)
            more = more or len(assignments) == want
        if self._on_cycle is not None:
            self._on_cycle(time.perf_counter() - started)
        return more
