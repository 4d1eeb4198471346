"""Demand-driven dispatch (SPEC §6): claim only what connected workers have free slots for.

The loop sleeps until something changes — a submit on this replica, a NOTIFY from another, a
freed worker slot, a newly connected worker — with `scheduler.interval_ms` only as the fallback
(for delayed jobs coming due, and anything a notification missed). Each cycle claims, per ready
worker, up to its free slots from the queues it serves, in one statement per worker.

A lone submit may skip the cycle (`submit_assigned`, `scheduler.assign_at_submit`): when a
worker connected here serves its queue with a free slot and none of the queue's jobs is
waiting, the job is inserted already assigned to that worker and handed to its stream, as a
claim would have done a moment later, one statement and two process wake-ups sooner.

Paused and limited queues (issue 18, `QueueFlow`) are claimed one queue at a time through the
limited claim, which counts what the queue holds and started under its lock, before the
ordinary claim takes the worker's remaining slots from its other queues. A rate limit that
held jobs back says when its window frees a start, and the dispatcher looks again then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from jobq.coordination.locks import Locker, job_lock_key
from jobq.domain.records import Assignment, NewJob, Submitted, Transition
from jobq.domain.states import JobStatus, Reason
from jobq.observability import tracing
from jobq.server.lifecycle import Lifecycle
from jobq.server.queue_flow import QueueFlow
from jobq.server.service_loop import ServiceLoop
from jobq.server.undelivered import Undelivered
from jobq.server.worker_capacity import ConnectedWorker, WorkerCapacity
from jobq.storage.stores import JobStore

MAX_RETRY_S = 5.0


class Dispatcher:
    """Claims jobs for the connected workers and hands them to their streams."""

    def __init__(
        self,
        jobs: JobStore,
        capacity: WorkerCapacity,
        lifecycle: Lifecycle,
        undelivered: Undelivered,
        *,
        batch_size: int,
        interval_s: float,
        assignment_timeout_s: float,
        locker: Locker,
        flow: QueueFlow | None = None,
        on_cycle: Callable[[float], None] | None = None,
    ) -> None:
        self._jobs = jobs
        self._capacity = capacity
        self._lifecycle = lifecycle
        self._undelivered = undelivered
        self._batch_size = batch_size
        self._lock_ttl_ms = int(assignment_timeout_s * 1000)
        self._locker = locker
        self._on_cycle = on_cycle
        self._flow = flow
        self._rotation = 0  # which limited queue a worker's claims start with, in turn
        self._retry_handle: asyncio.TimerHandle | None = None
        self._retry_at = 0.0
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
        # What wakes a cycle besides submits (Submitter's on_inserted) and NOTIFY: a freed
        # slot or a new stream, and jobs that became runnable again.
        capacity.on_room(lambda _worker, _keys: self._wake())
        lifecycle.subscribe(self._runnable_again)

    def wake(self) -> None:
        """Run a cycle as soon as possible (cheap; call it on every relevant change)."""
        self._wake()

    def queues_changed(self) -> None:
        """A queue was paused, resumed or limited (here or on another replica): read the
        queues' flow settings again and look for jobs at once (a resumed queue's)."""
        if self._flow is not None:
            self._flow.invalidate()
        self._wake()

    def wake_for_new_jobs(self) -> None:
        """New jobs only matter to a cycle if some connected worker has a free slot; without
        one, the slot's release will wake the dispatcher anyway."""
        if self._capacity.any_free_slot():
            self._wake()

    def _runnable_again(self, transitions: Sequence[Transition]) -> None:
        """Jobs given back to PENDING (released, rescued, retried by hand) can run now; a
        retry after a failure waits for its backoff, which the interval's pass finds. A job
        that left PENDING again in the same write is not waiting: a submit assigned at once
        (submit_assigned) wakes no cycle, which would claim nothing and, run before the
        stream's writer, held up the job's delivery by about 0.4 ms."""
        pending = [
            t.job_id
            for t in transitions
            if t.to_status is JobStatus.PENDING and t.reason is not Reason.RETRY
        ]
        if not pending:
            return
        if len(pending) < len(transitions):
            now = {t.job_id: t.to_status for t in transitions}  # each job's last status
            if all(now[job_id] is not JobStatus.PENDING for job_id in pending):
                return
        self.wake_for_new_jobs()

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        if self._retry_handle is not None:
            self._retry_handle.cancel()
        await self.loop.stop()

    async def _tick(self) -> None:
        if await self.run_once():
            self._wake()  # some claim came back full: more may be waiting

    async def run_once(self) -> bool:
        """One cycle. True when some worker's claim came back full (more may be waiting)."""
        started = time.perf_counter()
        more = False
        limited_queues = await self._flow.refresh() if self._flow is not None else frozenset()
        for worker in self._capacity.ready():
            want = min(worker.free_slots, self._batch_size)
            if want <= 0:
                continue
            queues: Sequence[str] = worker.queues
            if limited_queues and not limited_queues.isdisjoint(queues):
                assert self._flow is not None
                limited, queues = self._flow.split(worker.queues)
                taken, full = await self._claim_limited(worker, limited, want)
                more = more or full
                want -= taken
                if want <= 0 or not queues:
                    continue
            claim_started = tracing.claim_started_ns()
            with self._lifecycle.write() as changes:
                assignments = await self._jobs.jobs_claim(
                    worker.worker_id, queues, want, incarnation=worker.incarnation
                )
                changes.assigned(assignments)
            if not assignments:
                continue
            await self._deliver(worker, assignments, claim_started)
            more = more or len(assignments) == want
        if self._on_cycle is not None:
            self._on_cycle(time.perf_counter() - started)
        return more

    async def _claim_limited(
        self, worker: ConnectedWorker, queues: list[str], want: int
    ) -> tuple[int, bool]:
        """Claim up to `want` jobs for `worker` from its paused or limited `queues`, one queue
        at a time, starting with each in turn; returns (jobs taken, some claim came back
        full)."""
        taken, full = 0, False
        start = self._rotation % len(queues)
        self._rotation += 1
        for queue in queues[start:] + queues[:start]:
            ask = want - taken
            if ask <= 0:
                break
            claim_started = tracing.claim_started_ns()
            with self._lifecycle.write() as changes:
                claim = await self._jobs.jobs_claim_limited(
                    worker.worker_id, queue, ask, incarnation=worker.incarnation
                )
                changes.assigned(claim.assignments)
            if claim.retry_after_s is not None:
                self._look_again_in(claim.retry_after_s)
            if claim.assignments:
                await self._deliver(worker, claim.assignments, claim_started)
                taken += len(claim.assignments)
                full = full or len(claim.assignments) == ask
        return taken, full

    def _look_again_in(self, delay_s: float) -> None:
        """Run a cycle when a rate limit's window frees a start (the earliest asked for)."""
        loop = asyncio.get_running_loop()
        at = loop.time() + delay_s + 0.001  # just past the window's edge
        if self._retry_handle is not None and not self._retry_handle.cancelled():
            if self._retry_at <= at and self._retry_at > loop.time():
                return
            self._retry_handle.cancel()
        self._retry_at = at
        self._retry_handle = loop.call_at(at, self._wake)

    async def submit_assigned(self, job: NewJob) -> Submitted | None:
        """Insert `job` assigned to the worker connected here that serves its queue with the
        most free slots, and hand it to that worker's stream (job_insert_assigned: only if that
        worker is ONLINE as the process of its stream and no job of the queue is waiting; else
        the job is inserted PENDING and the dispatcher woken). None when there is no such
        worker, the job is delayed, or its id or idempotency key is taken: nothing was written,
        and the caller submits it the ordinary way. QueueNotFound for an unknown queue."""
        if job.not_before is not None:
            return None
        worker = self._capacity.roomiest_for(job.queue_name)
        if worker is None:
            return None
        claim_started = tracing.claim_started_ns()
        with self._lifecycle.write() as changes:
            direct = await self._jobs.job_insert_assigned(
                job, worker.worker_id, incarnation=worker.incarnation
            )
            if direct is None:
                return None
            submitted = direct.submitted
            changes.submitted([job], [(submitted.job_id, submitted.created_at)])
            if direct.assignment is not None:
                changes.assigned([direct.assignment])
        if direct.assignment is None:
            self.wake_for_new_jobs()  # it waits its turn behind the queue's others
        else:
            await self._deliver(worker, [direct.assignment], claim_started)
        return submitted

    async def _deliver(
        self, worker: ConnectedWorker, assignments: list[Assignment], claim_started: int
    ) -> None:
        """Hand committed assignments to the worker's stream; with tracing on, a traced job's
        claim is recorded and its dispatch span covers this hand-over (its context goes to the
        worker with the assignment)."""
        traced = tracing.dispatch_spans(assignments, claim_started, worker.worker_id)
        if traced is None:
            await self._hand_over(worker, assignments)
            return
        assignments, spans = traced
        try:
            await self._hand_over(worker, assignments)
        except BaseException as exc:
            spans.end(exc)
            raise
        spans.end()

    async def _hand_over(self, worker: ConnectedWorker, assignments: list[Assignment]) -> None:
        # The Redis lock marks who holds the job for operators and the seed design's tooling;
        # it decides nothing. The claim that committed in PostgreSQL is the only owner, so a
        # key another replica still holds is the stale mark of a claim that was given back
        # within the lock's TTL, and the job is delivered all the same.
        await self._locker.acquire_many(
            [job_lock_key(a.job.job_id) for a in assignments], self._lock_ttl_ms
        )
        # The stream may have ended, or the worker begun draining (or the cycle filled its
        # slots), while we claimed: what it cannot take goes back at once, and its marks too.
        refused = self._capacity.assign(worker, assignments)
        if refused:
            await self._undelivered.give_back(refused)
            await self._locker.release_many([job_lock_key(a.job.job_id) for a in refused])
