"""What jq-server's metrics and logs make of the lifecycle stream: subscribers of it
(`Lifecycle.subscribe`), so a transition is counted and logged once, wherever it was made."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from jobq.domain.records import Transition
from jobq.domain.states import JobStatus, Reason
from jobq.observability.logging_setup import get_logger
from jobq.observability.metrics import LabelledChildren, ServerMetrics

log = get_logger("jobq.lifecycle")


class TransitionMetrics:
    """Counts submits, assignments, completions, failures, retries and dead letters, and
    observes wait and run times, per queue."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics
        self._child = LabelledChildren().of

    def __call__(self, transitions: Sequence[Transition]) -> None:
        # Submits and completions, the bulk of a busy stream, are counted once per batch and
        # queue: a labelled child's lookup and locked increment cost about 1 µs each.
        done: dict[str, int] = {}
        submitted: dict[str, int] = {}
        for t in transitions:
            if t.reason is Reason.SUBMITTED:
                submitted[t.queue_name] = submitted.get(t.queue_name, 0) + 1
                continue
            if t.to_status is JobStatus.DONE:
                done[t.queue_name] = done.get(t.queue_name, 0) + 1
            self._count(t)
        for queue, count in submitted.items():
            self._child(self._metrics.jobs_submitted, queue).inc(count)
        for queue, count in done.items():
            self._child(self._metrics.jobs_completed, queue, JobStatus.DONE.value).inc(count)

    def _count(self, t: Transition) -> None:
        """Observe one transition (submits and completions are counted per batch, above)."""
        m = self._metrics
        queue = t.queue_name
        if t.reason is Reason.ASSIGNED:
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


class TransitionLog:
    """Logs noteworthy transitions (failures, dead letters, interruptions) at INFO, and every
    transition at DEBUG."""

    def __init__(self) -> None:
        self._debug = logging.getLogger("jobq.lifecycle").isEnabledFor(logging.DEBUG)

    def __call__(self, transitions: Sequence[Transition]) -> None:
        for t in transitions:
            self._one(t)

    def _one(self, t: Transition) -> None:
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
