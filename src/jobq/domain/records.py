"""The records the storage layer returns: jobs, their events, queues and workers.

Plain immutable dataclasses, independent of asyncpg rows and proto messages; `rpc/convert.py`
translates them to the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar, dataclass_transform
from uuid import UUID

from jobq.domain.states import JobStatus, Reason, WorkerStatus

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[_T]) -> type[_T]:
    """A slotted dataclass that mypy treats as frozen (assigning a field is a type error), with
    equality and a hash from its fields as a frozen one has. It is not frozen at run time:
    a frozen dataclass's __init__ sets every field through object.__setattr__, five times the
    cost of a plain one (2.2 against 0.44 µs for ten fields), and the server builds several of
    these per job on the hot path (claims, reports, transitions)."""
    return dataclass(slots=True, unsafe_hash=True)(cls)


@record
class NewJob:
    """A job as submitted, before it has an id and timestamps of its own."""

    job_id: UUID
    queue_name: str
    payload: bytes
    priority: int = 0
    max_retries: int | None = None  # None: take the queue's default
    not_before: datetime | None = None


@record
class Job:
    """A job as stored: its current state, attempt counter and timestamps."""

    job_id: UUID
    queue_name: str
    payload: bytes
    status: JobStatus
    priority: int
    max_retries: int
    retry_count: int
    attempt: int
    worker_id: UUID | None
    result: bytes | None
    error_message: str | None
    not_before: datetime | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime


@record
class Assignment:
    """A claimed job as handed to a worker: the job plus its fencing token and time limit."""

    job: Job
    timeout_s: int | None  # the queue's TTL, used when the payload names no timeout


@record
class JobEvent:
    """One row of a job's append-only history."""

    id: int
    job_id: UUID
    queue_name: str
    from_status: JobStatus | None
    to_status: JobStatus
    worker_id: UUID | None
    reason: Reason
    detail: str | None
    attempt: int | None
    occurred_at: datetime


@record
class AttemptRef:
    """The fencing token a worker presents: which attempt of which job, held by which worker."""

    job_id: UUID
    attempt: int
    worker_id: UUID


@record
class AttemptResult:
    """What happened to one presented attempt: applied, an idempotent duplicate, or rejected."""

    job_id: UUID
    attempt: int
    accepted: bool
    message: str = ""


@record
class Failure:
    """A failed attempt to record: the fencing token, the error text and why it failed
    (FAILED when the worker reported it, WORKER_LOST when the heartbeat monitor did).
    `refused`: the worker refused the job as one that can never run; it is dead-lettered at
    once (REFUSED) instead of retried."""

    job_id: UUID
    attempt: int
    worker_id: UUID
    error_message: str
    reason: Reason = Reason.FAILED
    refused: bool = False


@record
class Success:
    """A successful attempt to record, with its JSON-encoded (or raw) result."""

    job_id: UUID
    attempt: int
    worker_id: UUID
    result: bytes


@record
class Transition:
    """One applied job state change, as its subscribers (metrics, logs) see it."""

    job_id: UUID
    queue_name: str
    from_status: JobStatus | None
    to_status: JobStatus
    reason: Reason
    worker_id: UUID | None
    attempt: int
    created_at: datetime
    started_at: datetime | None
    occurred_at: datetime


@record
class ReportOutcome:
    """What a batch of worker reports did: a result per presented attempt, and the state
    changes that were applied (to publish as lifecycle events)."""

    results: list[AttemptResult]
    transitions: list[Transition]


@record
class Queue:
    name: str
    max_retries: int
    ttl_seconds: int | None
    created_at: datetime
    updated_at: datetime


@record
class QueueStats:
    queue_name: str
    counts: dict[JobStatus, int] = field(default_factory=dict)
    oldest_pending_age_s: float = 0.0
    total_retries: int = 0


@record
class Worker:
    worker_id: UUID
    hostname: str
    status: WorkerStatus
    concurrency: int
    active_job_count: int
    queues: tuple[str, ...]
    last_heartbeat: datetime
    registered_at: datetime
    updated_at: datetime
    shutdown_requested: bool = False


@record
class JobPage:
    """One page of ListJobs and the opaque token of the next (empty when this is the last)."""

    jobs: list[Job]
    next_page_token: str


@record
class NewAuditEvent:
    """An admin action to record: who (`token:NAME`, `cert:CN`, `anonymous`), what
    (`queue.delete`), on which object, and how it ended (`ok` or the refusal)."""

    actor: str
    action: str
    target: str
    outcome: str
    detail: str | None = None


@record
class AuditEvent:
    """One stored audit record."""

    id: int
    occurred_at: datetime
    actor: str
    action: str
    target: str
    outcome: str
    detail: str | None


@record
class AuditPage:
    """One page of ListAuditEvents and the opaque token of the next (empty when this is the
    last)."""

    events: list[AuditEvent]
    next_page_token: str
