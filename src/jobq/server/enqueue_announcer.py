"""Announces jobs that applications enqueued in their own transactions (jobq.enqueue).

A submit through jq-server is published on the lifecycle stream by the write that inserted it:
its `jq_jobs_submitted` count, its log line, and whatever else subscribes to PENDING. A
transactional enqueue has no server in it, so it leaves the job's id in `enqueued_jobs`
(db/migrations/V14) and NOTIFYs 'enqueued' at commit; this loop takes the ids out and publishes
their SUBMITTED transitions, so such a job is counted and logged as any other. Each id is
taken by one replica, once (a DELETE); a claim or a cancel that gets to a job first announces
it itself, before its assignment or cancellation (jobs_claim, job_cancel), and TTL expiry waits
for the announcement (jobs_expire_ttl).

Woken by the notification; the interval is the fallback for what was committed while this
replica was not listening (a restart of the server or of PostgreSQL's connection), and the
notifier wakes it after every reconnect as well.
"""

from __future__ import annotations

from jobq.server.lifecycle import Lifecycle
from jobq.server.service_loop import ServiceLoop
from jobq.storage.stores import MaintenanceStore

SWEEP_INTERVAL_S = 10.0
BATCH_LIMIT = 500


class EnqueueAnnouncer:
    def __init__(
        self,
        maintenance: MaintenanceStore,
        lifecycle: Lifecycle,
        *,
        interval_s: float | None = None,
        batch_limit: int | None = None,
    ) -> None:
        self._maintenance = maintenance
        self._lifecycle = lifecycle
        self._batch_limit = batch_limit if batch_limit is not None else BATCH_LIMIT
        self.loop = ServiceLoop(
            "announcer",
            interval_s if interval_s is not None else SWEEP_INTERVAL_S,
            self.run_once,
            retry_s=0.5,
            max_retry_s=5.0,
        )

    def wake(self) -> None:
        self.loop.wake()

    async def run_once(self) -> int:
        """Announce what is waiting, a batch per write, until a batch comes back short;
        returns how many jobs were announced."""
        announced = 0
        while True:
            with self._lifecycle.write() as changes:
                transitions = await self._maintenance.enqueued_jobs_take(self._batch_limit)
                changes.applied(transitions)
            announced += len(transitions)
            if len(transitions) < self._batch_limit:
                return announced
