"""The lifecycle stream: every job state change this replica commits, PENDING and ASSIGNED
included, is published here, once, after its commit and in commit order per job; metrics, logs,
slot bookkeeping and the dispatcher's wake-ups subscribe (Oban.Telemetry's shape) instead of
each call site counting for itself.

A write that changes jobs runs inside `with lifecycle.write() as changes:` and hands what it
applied to `changes` (`applied`, `submitted`, `assigned`, `operator_changed`). The write's ticket is
what keeps one job's changes in commit order across concurrent writes (see publication_order).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from uuid import UUID

from jobq.domain.records import Assignment, Job, NewJob, OperatorChange, Submitted, Transition
from jobq.domain.states import JobStatus, Reason
from jobq.server.publication_order import PublicationOrder

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
            if job is not None:
                self.transitions.append(Transition.submitted(job_id, job.queue_name, created_at))

    def submitted_waiting(self, jobs: Sequence[NewJob], results: Sequence[Submitted]) -> None:
        """New jobs with prerequisites were committed WAITING, or dead-lettered at once
        (DEPENDENCY_FAILED: a prerequisite was dead-lettered already); PENDING and existing
        results are left to `submitted`."""
        by_id = {job.job_id: job for job in jobs}
        for result in results:
            job = by_id.get(result.job_id)
            if job is None or result.existing or result.status is JobStatus.PENDING:
                continue
            submitted = Transition.submitted(result.job_id, job.queue_name, result.created_at)
            self.transitions.append(replace(submitted, to_status=JobStatus.WAITING))
            if result.status is JobStatus.DEAD_LETTERED:
                self.transitions.append(
                    replace(
                        submitted,
                        from_status=JobStatus.WAITING,
                        to_status=JobStatus.DEAD_LETTERED,
                        reason=Reason.DEPENDENCY_FAILED,
                    )
                )

    def assigned(self, assignments: Sequence[Assignment]) -> None:
        """Jobs were claimed for a worker (PENDING → ASSIGNED); a job a transactional enqueue
        wrote and no server announced yet is announced first (SUBMITTED, then ASSIGNED)."""
        for assignment in assignments:
            job = assignment.job
            if assignment.unannounced:
                self.transitions.append(
                    Transition.submitted(job.job_id, job.queue_name, job.created_at)
                )
            self.transitions.append(_of_job(job, Reason.ASSIGNED, JobStatus.PENDING))

    def operator_changed(self, change: OperatorChange, reason: Reason) -> None:
        """An operator action changed one job (cancel, manual retry); a job a transactional
        enqueue wrote and no server announced yet is announced first."""
        job = change.job
        if change.unannounced:
            self.transitions.append(
                Transition.submitted(job.job_id, job.queue_name, job.created_at)
            )
        self.transitions.append(_of_job(job, reason, change.was, change.has_dependants))


def _of_job(
    job: Job, reason: Reason, from_status: JobStatus | None, has_dependants: bool = False
) -> Transition:
    """The change that left `job` as it is now (its status, worker and time of update)."""
    return Transition(
        job_id=job.job_id,
        queue_name=job.queue_name,
        from_status=from_status,
        to_status=job.status,
        reason=reason,
        worker_id=job.worker_id,
        attempt=job.attempt,
        created_at=job.created_at,
        started_at=job.started_at,
        occurred_at=job.updated_at,
        has_dependants=has_dependants,
    )


class Lifecycle:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
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
            self._order.close(ticket, changes.transitions, contextvars.copy_context())

    def _publish(self, transitions: Sequence[Transition]) -> None:
        """Committed state changes, in order: tell the subscribers."""
        for subscriber in self._subscribers:
            subscriber(transitions)
