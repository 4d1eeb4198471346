"""WatchJobs: each watched job is delivered once it has ended (DONE or DEAD_LETTERED), pushed,
not polled by the client.

A job this replica ends is seen on the lifecycle stream, right after its commit: the watch reads
it and sends it at once (tens of milliseconds from the worker's report). A job another replica
ends never appears on this replica's stream, so while anyone watches, one shared look
(`jobs_ended`, a single statement for every watched id) runs every `poll_s` seconds: the bound
for those. Nothing runs, and the lifecycle subscriber returns at once, while nobody watches.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Protocol
from uuid import UUID

from jobq.domain.errors import JobNotFound
from jobq.domain.records import Job, Transition
from jobq.domain.states import JobStatus
from jobq.server.lifecycle import Lifecycle
from jobq.server.service_loop import ServiceLoop

ENDED = (JobStatus.DONE, JobStatus.DEAD_LETTERED)
MAX_WATCHED = 1000
"""Ids one WatchJobs call may watch (and one look reads)."""
POLL_S = 0.5


class JobWatchStore(Protocol):
    async def jobs_get_many(self, job_ids: Sequence[UUID]) -> list[Job]: ...
    async def jobs_ended(self, job_ids: Sequence[UUID]) -> list[Job]: ...


Ended = UUID | Job
"""What a watch is told: the id of a job this replica's stream saw end (to read), or a job the
periodic look found ended."""


class JobWatch:
    def __init__(
        self, store: JobWatchStore, lifecycle: Lifecycle, *, poll_s: float | None = None
    ) -> None:
        self._store = store
        self._watchers: dict[UUID, list[asyncio.Queue[Ended]]] = {}
        lifecycle.subscribe(self._published)
        self.loop = ServiceLoop("job_watch", POLL_S if poll_s is None else poll_s, self._look)

    async def watch(self, job_ids: Sequence[UUID]) -> AsyncGenerator[Job, None]:
        """Yield each of `job_ids` (distinct) once it has ended; JobNotFound (before anything
        is yielded) for an unknown one."""
        pending = set(job_ids)
        ended: asyncio.Queue[Ended] = asyncio.Queue()
        # Registered before the first read: an ending committed meanwhile is not missed.
        for job_id in pending:
            self._watchers.setdefault(job_id, []).append(ended)
        try:
            jobs = await self._store.jobs_get_many(list(pending))
            missing = pending - {job.job_id for job in jobs}
            if missing:
                raise JobNotFound(min(missing))
            for job in jobs:
                if job.status in ENDED:
                    pending.discard(job.job_id)
                    self._forget(job.job_id, ended)
                    yield job
            while pending:
                told = [await ended.get()]
                while not ended.empty():
                    told.append(ended.get_nowait())
                found = [item for item in told if isinstance(item, Job)]
                to_read = [i for i in told if isinstance(i, UUID) and i in pending]
                if to_read:
                    found += await self._store.jobs_get_many(to_read)
                for job in found:
                    if job.job_id in pending and job.status in ENDED:
                        pending.discard(job.job_id)
                        self._forget(job.job_id, ended)
                        yield job
        finally:
            for job_id in pending:
                self._forget(job_id, ended)

    def _forget(self, job_id: UUID, queue: asyncio.Queue[Ended]) -> None:
        queues = self._watchers.get(job_id)
        if queues is not None and queue in queues:
            queues.remove(queue)
            if not queues:
                del self._watchers[job_id]

    def _published(self, transitions: Sequence[Transition]) -> None:
        if not self._watchers:
            return  # the common case: nobody waits
        for t in transitions:
            if t.to_status in ENDED:
                for queue in self._watchers.get(t.job_id, ()):
                    queue.put_nowait(t.job_id)

    async def _look(self) -> None:
        """Find watched jobs that have ended elsewhere."""
        watched = list(self._watchers)
        for start in range(0, len(watched), MAX_WATCHED):
            for job in await self._store.jobs_ended(watched[start : start + MAX_WATCHED]):
                for queue in self._watchers.get(job.job_id, ()):
                    queue.put_nowait(job)
