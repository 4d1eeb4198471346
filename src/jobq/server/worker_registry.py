"""The workers whose job streams are open on this jq-server replica, and their free slots.

The dispatcher claims only as many jobs as these workers have free slots for (demand-driven
dispatch, SPEC §6). A slot is taken when an assignment is handed to a worker's stream and freed
when the worker reports the attempt's result, when it is released, or when a heartbeat shows
the worker no longer runs it (its report may have reached another replica).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from jobq.domain.records import Assignment, NewJob, Transition
from jobq.domain.states import JobStatus

AttemptKey = tuple[UUID, int]
_HELD = (JobStatus.ASSIGNED, JobStatus.RUNNING)

# How long a fresh assignment counts as held even when a heartbeat does not list it yet: the
# heartbeat may have been sent before the assignment reached the worker.
_HEARTBEAT_GRACE_S = 10.0


@dataclass(eq=False)
class ConnectedWorker:
    """One open StreamJobs call: what the worker serves, what it holds, what is on its way.
    `incarnation` is the process that opened it; claims for the stream are made for that
    process only (a superseded one's stream gets nothing, see jobs_claim)."""

    worker_id: UUID
    queues: tuple[str, ...]
    concurrency: int
    incarnation: UUID
    draining: bool = False
    in_flight: dict[AttemptKey, float] = field(default_factory=dict)
    outbox: asyncio.Queue[Assignment | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    @property
    def free_slots(self) -> int:
        if self.draining or self.closed:
            return 0
        return max(0, self.concurrency - len(self.in_flight))

    def deliver(self, assignments: Sequence[Assignment]) -> None:
        """Take slots for `assignments` and queue them for the stream writer."""
        now = time.monotonic()
        for assignment in assignments:
            self.in_flight[(assignment.job.job_id, assignment.job.attempt)] = now
            self.outbox.put_nowait(assignment)

    def free(self, keys: Iterable[AttemptKey]) -> bool:
        """Give back the slots of finished attempts; True when any slot was freed."""
        freed = False
        for key in keys:
            freed |= self.in_flight.pop(key, None) is not None
        return freed

    def reconcile(self, running: set[AttemptKey]) -> list[AttemptKey]:
        """Forget attempts the worker does not hold (reported elsewhere, or lost in transit),
        keeping fresh assignments it may not have received yet; returns those forgotten."""
        cutoff = time.monotonic() - _HEARTBEAT_GRACE_S
        stale = [k for k, t in self.in_flight.items() if k not in running and t < cutoff]
        self.free(stale)
        return stale

    def close(self) -> None:
        """End the stream: the writer drains nothing more and returns."""
        if not self.closed:
            self.closed = True
            self.outbox.put_nowait(None)

    def take_undelivered(self) -> list[Assignment]:
        """Assignments still queued for the stream (to give back when it ends)."""
        items: list[Assignment] = []
        while not self.outbox.empty():
            item = self.outbox.get_nowait()
            if item is not None:
                items.append(item)
                self.in_flight.pop((item.job.job_id, item.job.attempt), None)
        return items


class WorkerRegistry:
    """Connected workers by id. One stream per worker: a reconnect replaces the old one."""

    def __init__(self) -> None:
        self._workers: dict[UUID, ConnectedWorker] = {}

    def attach(
        self,
        worker_id: UUID,
        queues: Sequence[str],
        concurrency: int,
        held: Iterable[AttemptKey] = (),
        draining: bool = False,
        *,
        incarnation: UUID,
    ) -> tuple[ConnectedWorker, ConnectedWorker | None]:
        """Register a stream opened by the worker's process `incarnation`, which holds the
        claims `held`; returns it and the stream it replaced (to close)."""
        worker = ConnectedWorker(
            worker_id, tuple(queues), concurrency, incarnation, draining=draining
        )
        now = time.monotonic()
        for key in held:
            worker.in_flight[key] = now
        previous = self._workers.get(worker_id)
        self._workers[worker_id] = worker
        return worker, previous

    def detach(self, worker: ConnectedWorker) -> None:
        """Forget a stream that ended (unless a newer one already replaced it)."""
        if self._workers.get(worker.worker_id) is worker:
            del self._workers[worker.worker_id]
        worker.close()

    def get(self, worker_id: UUID) -> ConnectedWorker | None:
        return self._workers.get(worker_id)

    def close_superseded(self, worker_id: UUID, incarnation: UUID) -> bool:
        """Close the worker's stream here if a process other than `incarnation` opened it (a
        newer one registered); True when one was closed. The claims its slots counted were
        released by the registration, and their transitions free the slots."""
        worker = self._workers.get(worker_id)
        if worker is None or worker.incarnation == incarnation:
            return False
        worker.close()
        return True

    def can_take(self, jobs: Sequence[NewJob]) -> bool:
        """True when, for each queue of `jobs`, the connected workers serving it have at least
        as many free slots as it has jobs (a hint for wake-ups: a worker serving two queues is
        counted for both)."""
        wanted: dict[str, int] = {}
        for job in jobs:
            wanted[job.queue_name] = wanted.get(job.queue_name, 0) + 1
        for queue, count in wanted.items():
            free = sum(w.free_slots for w in self._workers.values() if queue in w.queues)
            if free < count:
                return False
        return True

    def any_free_slot(self) -> bool:
        return any(w.free_slots > 0 for w in self._workers.values())

    def with_free_slots(self) -> list[ConnectedWorker]:
        """Workers that can take jobs now, those with most free slots first."""
        ready = [w for w in self._workers.values() if w.free_slots > 0]
        ready.sort(key=lambda w: w.free_slots, reverse=True)
        return ready

    def free_left(self, transitions: Sequence[Transition]) -> bool:
        """Free the slots of jobs that left their worker (done, failed, cancelled, rescued,
        timed out, released): every applied transition out of ASSIGNED/RUNNING. True when
        any slot was freed."""
        left: dict[UUID, list[AttemptKey]] = {}
        for t in transitions:
            if t.worker_id is not None and t.to_status not in _HELD:
                left.setdefault(t.worker_id, []).append((t.job_id, t.attempt))
        return self.free(left) if left else False

    def free(self, keys_by_worker: dict[UUID, list[AttemptKey]]) -> bool:
        """Free the slots of these attempts, by worker; True when any slot was freed."""
        freed = False
        for worker_id, keys in keys_by_worker.items():
            worker = self._workers.get(worker_id)
            if worker is not None:
                freed |= worker.free(keys)
        return freed

    def all(self) -> list[ConnectedWorker]:
        return list(self._workers.values())

    def close_all(self) -> None:
        for worker in list(self._workers.values()):
            worker.close()
