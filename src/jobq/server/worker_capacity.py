"""The one owner of worker capacity on this jq-server replica: which workers have a job stream
open here, what they serve, and which of their slots hold an assignment.

Demand-driven dispatch (SPEC §6) claims only what these slots can take, so a slot is taken and
freed here and nowhere else. `assign` takes one when the dispatcher hands an assignment to a
stream. It is freed exactly once, by whichever of these comes first:

- the worker reports the attempt's result, accepted or not (`reported`): it no longer runs it;
- a committed transition takes the job off the worker: released, rescued, cancelled, timed out
  (`left`, subscribed to the lifecycle stream);
- a heartbeat does not list it once the grace has passed (`reconcile`): its report reached
  another replica, or the assignment was lost in transit;
- the assignment never reached the worker: its write failed (`undelivered`), or it was still
  queued when the stream ended (`detach`, which returns those to give back);
- the stream ends (`detach`): the slots it held go with it.

Drain and shutdown take no slot back; they leave the worker no free one. Every free, and every
newly attached stream, is told to the `on_room` subscribers (the dispatcher wakes). The
dispatcher, the servicers and the monitors call these methods; none keeps slots of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from jobq.domain.records import Assignment, NewJob, Transition
from jobq.domain.states import JobStatus

AttemptKey = tuple[UUID, int]
Clock = Callable[[], float]
OnRoom = Callable[["ConnectedWorker", list[AttemptKey]], None]

_HELD = (JobStatus.ASSIGNED, JobStatus.RUNNING)

HEARTBEAT_GRACE_S = 10.0
"""How long a fresh assignment counts as held though a heartbeat does not list it: the heartbeat
may have been sent before the assignment reached the worker."""


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """A cancel to write on a worker's stream (JobAssignmentBatch.cancels): CancelJob asked for
    the attempt to stop. It takes and frees no slot: the job's end frees it."""

    job_id: UUID
    attempt: int


StreamItem = Assignment | CancelOrder
"""What a stream's writer sends: assignments and cancels, in the order they were queued."""


@dataclass(eq=False)
class ConnectedWorker:
    """One open StreamJobs call: what the worker serves, what it holds, what is on its way.
    `incarnation` is the process that opened it; claims for the stream are made for that
    process only (a superseded one's stream gets nothing, see jobs_claim). Its slots are
    WorkerCapacity's to change: read `free_slots` and `held`, never write them."""

    worker_id: UUID
    queues: tuple[str, ...]
    concurrency: int
    incarnation: UUID
    draining: bool = False
    held: dict[AttemptKey, float] = field(default_factory=dict)
    """The attempts whose slots are taken, with when each was taken (for the grace)."""
    outbox: asyncio.Queue[StreamItem | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    @property
    def free_slots(self) -> int:
        if self.draining or self.closed:
            return 0
        return max(0, self.concurrency - len(self.held))


class WorkerCapacity:
    """Connected workers by id, one stream each (a reconnect replaces the old one), and the
    slots of each."""

    def __init__(self, clock: Clock = time.monotonic, grace_s: float | None = None) -> None:
        self._workers: dict[UUID, ConnectedWorker] = {}
        self._clock = clock
        self._grace_s = HEARTBEAT_GRACE_S if grace_s is None else grace_s
        self._on_room: list[OnRoom] = []

    def on_room(self, subscriber: OnRoom) -> None:
        """Call `subscriber(worker, keys)` whenever `worker` may take more: the slots of `keys`
        were freed, or (no keys) its stream was attached."""
        self._on_room.append(subscriber)

    # --- streams -----------------------------------------------------------------------------

    def attach(
        self,
        worker_id: UUID,
        queues: Sequence[str],
        concurrency: int,
        held: Iterable[AttemptKey] = (),
        draining: bool = False,
        *,
        incarnation: UUID,
    ) -> ConnectedWorker:
        """Register a stream opened by the worker's process `incarnation`, which holds the
        claims `held` (they take slots). A stream it replaces is closed: it gets nothing more,
        and its own `detach` gives back what it had queued."""
        worker = ConnectedWorker(
            worker_id, tuple(queues), concurrency, incarnation, draining=draining
        )
        now = self._clock()
        for key in held:
            worker.held[key] = now
        previous = self._workers.get(worker_id)
        self._workers[worker_id] = worker
        if previous is not None:
            self._close(previous)
        self._tell(worker, [])
        return worker

    def detach(self, worker: ConnectedWorker) -> list[Assignment]:
        """The stream ended: forget it (unless a newer one replaced it), free its slots, and
        return the assignments still queued for it, which never reached the worker (to give
        back)."""
        if self._workers.get(worker.worker_id) is worker:
            del self._workers[worker.worker_id]
        self._close(worker)
        undelivered: list[Assignment] = []
        while not worker.outbox.empty():
            item = worker.outbox.get_nowait()
            # A cancel never written is repeated by the heartbeats' answers.
            if isinstance(item, Assignment):
                undelivered.append(item)
        self._free(worker, list(worker.held))
        return undelivered

    def close(self, worker_id: UUID, incarnation: UUID) -> bool:
        """Close the worker's stream here if the process `incarnation` opened it (it
        deregistered, or was refused as superseded); True when one was closed."""
        worker = self._workers.get(worker_id)
        if worker is None or worker.incarnation != incarnation:
            return False
        self._close(worker)
        return True

    def close_superseded(self, worker_id: UUID, incarnation: UUID) -> bool:
        """Close the worker's stream here if a process other than `incarnation` opened it (a
        newer one registered); True when one was closed. The claims its slots counted were
        released by the registration, and their transitions free the slots."""
        worker = self._workers.get(worker_id)
        if worker is None or worker.incarnation == incarnation:
            return False
        self._close(worker)
        return True

    def close_all(self) -> None:
        for worker in list(self._workers.values()):
            self._close(worker)

    def drain(self, worker_id: UUID) -> None:
        """The worker drains (or shuts down): it finishes what it holds and takes nothing
        more."""
        worker = self._workers.get(worker_id)
        if worker is not None:
            worker.draining = True

    @staticmethod
    def _close(worker: ConnectedWorker) -> None:
        """End the stream: its writer drains nothing more and returns."""
        if not worker.closed:
            worker.closed = True
            worker.outbox.put_nowait(None)

    # --- taking slots ------------------------------------------------------------------------

    def assign(
        self, worker: ConnectedWorker, assignments: Sequence[Assignment]
    ) -> list[Assignment]:
        """Take a slot for each assignment and queue it for the stream's writer, as far as the
        worker has free slots; returns those it could not take (the stream closed or the worker
        began draining while they were claimed), which the caller gives back."""
        room = worker.free_slots
        if room <= 0:
            return list(assignments)
        now = self._clock()
        for assignment in assignments[:room]:
            worker.held[(assignment.job.job_id, assignment.job.attempt)] = now
            worker.outbox.put_nowait(assignment)
        return list(assignments[room:])

    def cancel(self, worker_id: UUID, job_id: UUID, attempt: int) -> bool:
        """Queue a cancel of the attempt for the worker's stream, if the stream is open here
        (another replica holds it otherwise, and does the same on the same notification);
        True when queued."""
        worker = self._workers.get(worker_id)
        if worker is None or worker.closed:
            return False
        worker.outbox.put_nowait(CancelOrder(job_id, attempt))
        return True

    # --- freeing slots -----------------------------------------------------------------------

    def undelivered(self, worker: ConnectedWorker, assignments: Sequence[Assignment]) -> None:
        """The stream's write of these failed: they never reached the worker."""
        self._free(worker, [(a.job.job_id, a.job.attempt) for a in assignments])

    def reported(self, finished: dict[UUID, list[AttemptKey]]) -> None:
        """Workers reported these attempts' results (by worker id): they no longer run them,
        whether the report was accepted or came too late."""
        for worker_id, keys in finished.items():
            worker = self._workers.get(worker_id)
            if worker is not None:
                self._free(worker, keys)

    def left(self, transitions: Sequence[Transition]) -> None:
        """Committed transitions (the lifecycle stream): those out of ASSIGNED/RUNNING took
        their jobs off their workers."""
        gone: dict[UUID, list[AttemptKey]] = {}
        for t in transitions:
            if t.worker_id is not None and t.to_status not in _HELD:
                gone.setdefault(t.worker_id, []).append((t.job_id, t.attempt))
        if gone:
            self.reported(gone)

    def reconcile(
        self, worker_id: UUID, incarnation: UUID, running: set[AttemptKey]
    ) -> list[AttemptKey]:
        """A heartbeat of the process `incarnation` listed what it holds: free the attempts it
        does not hold (reported elsewhere, or lost in transit), keeping fresh assignments it may
        not have received yet; returns those freed."""
        worker = self._workers.get(worker_id)
        if worker is None or worker.incarnation != incarnation:
            return []
        cutoff = self._clock() - self._grace_s
        stale = [k for k, t in worker.held.items() if k not in running and t < cutoff]
        self._free(worker, stale)
        return stale

    def _free(self, worker: ConnectedWorker, keys: Iterable[AttemptKey]) -> None:
        freed = [key for key in keys if worker.held.pop(key, None) is not None]
        if freed:
            self._tell(worker, freed)

    def _tell(self, worker: ConnectedWorker, freed: list[AttemptKey]) -> None:
        for subscriber in self._on_room:
            subscriber(worker, freed)

    # --- reading -----------------------------------------------------------------------------

    def get(self, worker_id: UUID) -> ConnectedWorker | None:
        return self._workers.get(worker_id)

    def connected(self) -> list[ConnectedWorker]:
        return list(self._workers.values())

    def ready(self) -> list[ConnectedWorker]:
        """Workers that can take jobs now, those with most free slots first."""
        ready = [w for w in self._workers.values() if w.free_slots > 0]
        ready.sort(key=lambda w: w.free_slots, reverse=True)
        return ready

    def roomiest_for(self, queue: str) -> ConnectedWorker | None:
        """The worker serving `queue` with the most free slots, if any has one."""
        best: ConnectedWorker | None = None
        for worker in self._workers.values():
            free = worker.free_slots
            if free > 0 and queue in worker.queues and (best is None or free > best.free_slots):
                best = worker
        return best

    def any_free_slot(self) -> bool:
        return any(w.free_slots > 0 for w in self._workers.values())

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
