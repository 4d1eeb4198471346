"""The lifecycle stream: every job state change this replica commits, PENDING and ASSIGNED
included, is published here, once, after its commit and in commit order per job; metrics, logs,
slot bookkeeping and the dispatcher's wake-ups subscribe (Oban.Telemetry's shape) instead of
each call site counting for itself.

A write that changes jobs runs inside `with lifecycle.write() as changes:` and hands what it
applied to `changes` (`applied`, `submitted`, `assigned`, `job_changed`). The write's ticket is
what keeps one job's changes in commit order across concurrent writes (see publication_order).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from uuid import UUID

from jobq.domain.records import Assignment, Job, NewJob, Transition
from jobq.domain.states import JobStatus, Reason
from jobq.observability.logging_setup import get_logger
from jobq.observability.metrics import LabelledChildren, ServerMetrics
from jobq.server.publication_order import PublicationOrder

log = get_logger("jobq.lifecycle")

Subscriber = Callable[[Sequence[Transition]], None]


class Changes:
    """What one write applied, to publish when it returns."""

    __slots__ = ("transitions",)

    def __init__(self) -> None:
        self.transitions: list[Transition] = []

    def applied(self, transitions: Sequence[Transition]) -> None:
        self.transitions.extend(transitions)

    def submitted(self, jobs: Sequence[NewJob], created: Sequence[tuple[UUID, datetime]]) -> None:
        """New jobs were committed (PENDING, reason SUBMITTED); `created` pairs each job's id
        with its created_at, in the order of `jobs` (an idempotent resubmit may be absent)."""
        by_id = {job.job_id: job for job in jobs}
        for job_id, created_at in created:
            job = by_id.get(job_id)
            if job is None:
                continue
            self.transitions.append(
                Transition(
                    job_id=job.job_id,
                    queue_name=job.queue_name,
                    from_status=None,
                    to_status=JobStatus.PENDING,
                    reason=Reason.SUBMITTED,
                    worker_id=None,
                    attempt=0,
                    created_at=created_at,
                    started_at=None,
                    occurred_at=created_at,
                )
            )

    def assigned(self, assignments: Sequence[Assignment]) -> None:
        """Jobs were claimed for a worker (PENDING → ASSIGNED)."""
        for assignment in assignments:
            job = assignment.job
            self.transitions.append(
                Transition(
                    job_id=job.job_id,
                    queue_name=job.queue_name,
                    from_status=JobStatus.PENDING,
                    to_status=JobStatus.ASSIGNED,
                    reason=Reason.ASSIGNED,
                    worker_id=job.worker_id,
                    attempt=job.attempt,
                    created_at=job.created_at,
                    started_at=job.started_at,
                    occurred_at=job.updated_at,
                )
            )

    def job_changed(
        self, job: Job, reason: Reason | str, from_status: JobStatus | None = None
    ) -> None:
        """An operator action changed one job (cancel, manual retry)."""
        self.transitions.append(
            Transition(
                job_id=job.job_id,
                queue_name=job.queue_name,
                from_status=from_status,
                to_status=job.status,
                reason=Reason(reason),
                worker_id=job.worker_id,
                attempt=job.attempt,
                created_at=job.created_at,
                started_at=job.started_at,
                occurred_at=job.updated_at,
            )
        )


class Lifecycle:
    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics
        self._subscribers: list[Subscriber] = []
        self._debug = logging.getLogger("jobq.lifecycle").isEnabledFor(logging.DEBUG)
        self._child = LabelledChildren().of
        self._order = PublicationOrder(self._publish)

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    @contextmanager
    def write(self) -> Iterator[Changes]:
        """Wrap one write (from before its statement starts until it returned): what it hands
        to the yielded Changes is published when it is that write's turn."""
        ticket = self._order.open()
        changes = Changes()
        try:
            yield changes
        finally:
            self._order.close(ticket, changes.transitions)

    @property
    def held_back(self) -> int:
        """Transitions waiting for an earlier write to return."""
        return self._order.waiting

    def _publish(self, transitions: Sequence[Transition]) -> None:
        """Committed state changes, in order: count them, log them, tell the subscribers."""
        done: dict[str, int] = {}  # completions per queue, counted once per batch
        for t in transitions:
            if t.to_status is JobStatus.DONE:
                done[t.queue_name] = done.get(t.queue_name, 0) + 1
            self._count(t)
            self._log(t)
        for queue, count in done.items():
            self._child(self._metrics.jobs_completed, queue, JobStatus.DONE.value).inc(count)
        for subscriber in self._subscribers:
            subscriber(transitions)

    def _count(self, t: Transition) -> None:
        """Observe one transition (completions are counted by `publish`, per batch)."""
        m = self._metrics
        queue = t.queue_name
        if t.reason is Reason.SUBMITTED:
            self._child(m.jobs_submitted, queue).inc()
        elif t.reason is Reason.ASSIGNED:
            m.scheduler_jobs_assigned.inc()
        elif t.to_status is JobStatus.RUNNING and t.started_at is not None:
            self._child(m.job_wait_seconds, queue).observe(_seconds(t.created_at, t.started_at))
        elif t.to_status is JobStatus.DONE:
            if t.started_at is not None:
                self._child(m.job_duration_seconds, queue).observe(
                    _seconds(t.started_at, t.occurred_at)
                )
        elif t.to_status is JobStatus.FAILED:
            self._child(m.jobs_completed, queue, JobStatus.FAILED.value).inc()
            if t.started_at is not None and t.from_status is JobStatus.RUNNING:
                self._child(m.job_duration_seconds, queue).observe(
                    _seconds(t.started_at, t.occurred_at)
                )
        elif t.to_status is JobStatus.PENDING and t.reason is Reason.RETRY:
            self._child(m.job_retries, queue).inc()
        elif t.to_status is JobStatus.DEAD_LETTERED:
            self._child(m.jobs_dead_lettered, queue, t.reason.value).inc()

    def _log(self, t: Transition) -> None:
        noteworthy = t.to_status in (JobStatus.FAILED, JobStatus.DEAD_LETTERED) or t.reason in (
            Reason.WORKER_LOST,
            Reason.ASSIGNMENT_TIMEOUT,
            Reason.DELIVERY_FAILED,
        )
        if not noteworthy and not self._debug:
            return  # the common case: no line to write, so build no fields for it
        fields = {
            "action": f"job.{t.reason.value.lower()}",
            "job_id": str(t.job_id),
            "queue": t.queue_name,
            "worker_id": None if t.worker_id is None else str(t.worker_id),
            "attempt": t.attempt,
            "from_status": None if t.from_status is None else t.from_status.value,
            "to_status": t.to_status.value,
        }
        if noteworthy:
            log.info("job " + t.reason.value.lower().replace("_", " "), **fields)
        else:
            log.debug("job " + t.reason.value.lower().replace("_", " "), **fields)


def _seconds(start: datetime, end: datetime) -> float:
    """Seconds between two timezone-aware moments (PostgreSQL's timestamptz), never negative."""
    return max(0.0, (end - start).total_seconds())
