"""The job and worker state machines, defined once.

The member names are the values stored in the PostgreSQL enums (`job_status`, `worker_status`)
and the suffixes of the proto enums (`JOB_STATUS_PENDING` ...); a test checks all three agree.
The transitions are SPEC §4's and each JobStatus member's docstring says who makes them; they
are enforced where they are written, by the status guard of each statement in
`storage/sql/jobs.sql` and `maintenance.sql` (a transition table here would be consulted by
nothing and could only drift from them).
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its life. Each member says which component moves a job out of it."""

    PENDING = "PENDING"
    """Waiting to run. The dispatcher claims it (→ ASSIGNED); CancelJob or the TTL reaper
    dead-letters it."""

    ASSIGNED = "ASSIGNED"
    """Written to a worker's stream. The worker's start acknowledgement moves it to RUNNING; a
    failed stream write returns it to PENDING; CancelJob dead-letters it. An interruption — the
    assignment-timeout reaper (ASSIGNMENT_TIMEOUT), the heartbeat monitor (WORKER_LOST), a new
    process registering under the worker's id (WORKER_RESTARTED) — returns it to PENDING, or
    dead-letters it (POISON) when the job was interrupted more than its queue allows."""

    RUNNING = "RUNNING"
    """Executing on a worker. The worker's result report moves it to DONE or FAILED; an orderly
    worker shutdown returns it to PENDING (WORKER_SHUTDOWN). An interruption — the heartbeat
    monitor (WORKER_LOST) or a new process registering under the worker's id
    (WORKER_RESTARTED) — returns it to PENDING, or fails it and dead-letters it (POISON) when
    the job was interrupted more than its queue allows."""

    DONE = "DONE"
    """Finished successfully. Terminal."""

    FAILED = "FAILED"
    """The attempt failed. The retry policy moves it on at once: PENDING with a backoff, or
    DEAD_LETTERED when retries are exhausted or the worker refused the job; RetryJob brings it
    back by hand."""

    DEAD_LETTERED = "DEAD_LETTERED"
    """Given up on (retries exhausted, refused by the worker, interrupted too often, cancelled,
    TTL expired, a prerequisite dead-lettered). Terminal until RetryJob."""

    WAITING = "WAITING"
    """Submitted with depends_on, waiting for its prerequisites (issue 18): never claimed. The
    dependency resolver (server/dependency_resolver.py) moves it to PENDING once they are all
    DONE (DEPENDENCIES_MET), or dead-letters it once one is dead-lettered (DEPENDENCY_FAILED);
    CancelJob dead-letters it (CANCELLED)."""


class WorkerStatus(StrEnum):
    """A worker's registration state."""

    ONLINE = "ONLINE"
    """Registered and heartbeating; receives assignments."""

    OFFLINE = "OFFLINE"
    """Deregistered or declared lost by the heartbeat monitor; receives nothing."""

    DRAINING = "DRAINING"
    """Finishing its running jobs; receives no new assignments."""


class Reason(StrEnum):
    """Why a job changed state: the `reason` column of job_events."""

    SUBMITTED = "SUBMITTED"
    ASSIGNED = "ASSIGNED"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    RETRY = "RETRY"
    RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
    CANCELLED = "CANCELLED"
    TTL_EXPIRED = "TTL_EXPIRED"
    MANUAL_RETRY = "MANUAL_RETRY"
    WORKER_LOST = "WORKER_LOST"
    ASSIGNMENT_TIMEOUT = "ASSIGNMENT_TIMEOUT"
    WORKER_SHUTDOWN = "WORKER_SHUTDOWN"
    DELIVERY_FAILED = "DELIVERY_FAILED"
    """The assignment could not be written to the worker's stream (an addition to SPEC §4's
    list): the job goes back to PENDING at once without consuming a retry."""
    REFUSED = "REFUSED"
    """The worker refused the job as one that can never run (a handler or command it is not
    allowed to run, a payload it cannot run, a command job on a root worker): an addition to
    SPEC §4's list. FAILED → DEAD_LETTERED at once, without retries: another attempt would be
    refused the same way."""
    WORKER_RESTARTED = "WORKER_RESTARTED"
    """A new process registered under the id of the worker that held the job (a restart under a
    stable worker id): ASSIGNED/RUNNING → PENDING at once, an interruption (an addition to SPEC
    §4's list). The previous process is dead or superseded; its reports are refused."""
    POISON = "POISON"
    """The job was interrupted (WORKER_LOST, WORKER_RESTARTED, ASSIGNMENT_TIMEOUT) more often
    than its queue's max_interruptions: a job that takes down whoever runs it. Dead-lettered
    (an addition to SPEC §4's list), without touching retry_count."""

    DEPENDENCIES_MET = "DEPENDENCIES_MET"
    """Every prerequisite of a WAITING job is DONE: WAITING → PENDING (issue 18), or PENDING at
    its submit when they all were already."""
    DEPENDENCY_FAILED = "DEPENDENCY_FAILED"
    """A prerequisite of a WAITING job was dead-lettered (or no longer exists): WAITING →
    DEAD_LETTERED, and so on down the chain of dependants (issue 18)."""
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    """CancelJob asked for a RUNNING job to stop (an addition to SPEC §4's list): RUNNING →
    RUNNING, recorded with the canceller as detail. The job ends DEAD_LETTERED (CANCELLED) when
    its worker stops it, or when the attempt ends any way that would run it again."""

    @property
    def is_interruption(self) -> bool:
        """A delivery that ended without a result from the worker: it uses no retry, but counts
        towards the queue's max_interruptions."""
        return self in INTERRUPTIONS


INTERRUPTIONS: frozenset[Reason] = frozenset(
    {Reason.WORKER_LOST, Reason.WORKER_RESTARTED, Reason.ASSIGNMENT_TIMEOUT}
)
