"""Lifecycle events come from one place: every applied job state change is published here, and
metrics, logs and slot bookkeeping subscribe (Oban.Telemetry's shape), instead of each call site
counting for itself."""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from datetime import datetime

from jobq.domain.records import Assignment, Job, NewJob, Transition
from jobq.domain.states import JobStatus, Reason
from jobq.observability.logging_setup import get_logger
from jobq.observability.metrics import LabelledChildren, ServerMetrics

log = get_logger("jobq.lifecycle")

Subscriber = Callable[[Sequence[Transition]], None]


class Lifecycle:
    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics
        self._subscribers: list[Subscriber] = []
        self._debug = logging.getLogger("jobq.lifecycle").isEnabledFor(logging.DEBUG)
        self._child = LabelledChildren().of

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def submitted(self, jobs: Sequence[NewJob]) -> None:
        """New jobs were committed (PENDING, reason SUBMITTED)."""
        if len(jobs) == 1:  # the single-submit hot path: no tally to build
            self._child(self._metrics.jobs_submitted, jobs[0].queue_name).inc()
        else:
            for queue, count in Tally(job.queue_name for job in jobs).items():
                self._child(self._metrics.jobs_submitted, queue).inc(count)
        if self._debug:
            for job in jobs:
                log.debug(
                    "job submitted",
                    action="job.submitted",
                    job_id=str(job.job_id),
                    queue=job.queue_name,
                )

    def assigned(self, assignments: Sequence[Assignment]) -> None:
        """Jobs were claimed for a worker (PENDING → ASSIGNED)."""
        self._metrics.scheduler_jobs_assigned.inc(len(assignments))
        if not self._debug:
            return
        for assignment in assignments:
            job = assignment.job
            log.debug(
                "job assigned",
                action="job.assigned",
                job_id=str(job.job_id),
                worker_id=str(job.worker_id),
                queue=job.queue_name,
                attempt=job.attempt,
            )

    def job_changed(
        self, job: Job, reason: Reason | str, from_status: JobStatus | None = None
    ) -> None:
        """An operator action changed one job (cancel, manual retry)."""
        self.publish(
            [
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
            ]
        )

    def publish(self, transitions: Sequence[Transition]) -> None:
        """Applied state changes: count them, log them, tell the subscribers."""
        if not transitions:
            return
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
        if t.to_status is JobStatus.RUNNING and t.started_at is not None:
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
