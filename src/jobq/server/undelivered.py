"""Claims that never reached their worker go back to PENDING at once, without using a retry or
counting as an interruption (reason DELIVERY_FAILED): the stream ended before they were
written, a write failed, the worker began draining while they were claimed, or a heartbeat
showed the worker never got them. The released transitions go through the lifecycle stream,
which frees their slots and wakes the dispatcher."""

from __future__ import annotations

from collections.abc import Sequence

from jobq.domain.records import Assignment, AttemptRef
from jobq.domain.states import Reason
from jobq.server.lifecycle import Lifecycle
from jobq.storage.stores import JobStore


class Undelivered:
    def __init__(self, jobs: JobStore, lifecycle: Lifecycle) -> None:
        self._jobs = jobs
        self._lifecycle = lifecycle

    async def give_back(self, assignments: Sequence[Assignment]) -> None:
        await self.give_back_refs([a.ref for a in assignments if a.job.worker_id is not None])

    async def give_back_refs(self, refs: Sequence[AttemptRef]) -> None:
        if not refs:
            return
        with self._lifecycle.write() as changes:
            outcome = await self._jobs.jobs_release(list(refs), Reason.DELIVERY_FAILED)
            changes.applied(outcome.transitions)
