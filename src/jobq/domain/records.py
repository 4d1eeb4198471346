"""The records the storage layer returns: jobs, their events, queues and workers.

Plain immutable dataclasses, independent of asyncpg rows and proto messages; `rpc/convert.py`
translates them to the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar, dataclass_transform
from uuid import UUID

from jobq.domain.flow_limits import FlowLimits
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
    idempotency_key: str | None = None
    """None: no key. Else the job is created only if no job holds this key yet; a key is held
    for as long as its job's row exists, whatever its status (db/migrations/V13)."""
    id_from_client: bool = False
    """True: the client chose `job_id`, and a job that already has it is this one, submitted
    before (a retry): it is returned as existing instead of created. False: the server made it."""
    correlation_id: str | None = None
    """The correlation id of the request that submitted the job (its events carry it)."""
    concurrency_key: str | None = None
    """The key the queue's per-key limits count the job under (jobq.domain.flow_limits)."""
    depends_on: tuple[UUID, ...] = ()
    """The jobs it runs after (issue 18): it is written WAITING until they are all DONE."""
    trace_context: str | None = None
    """The W3C trace context of the span that submitted it (jobq.observability.tracing's
    carrier: `traceparent`, then a newline and the `tracestate`); None when tracing is off."""


@record
class Submitted:
    """What a submit did for one NewJob: inserted it (`existing` False: `job_id` is the new
    job's), or found its idempotency key held (`existing` True: `job_id` and `created_at` are
    those of the job that holds it, and nothing was created)."""

    job_id: UUID
    created_at: datetime
    existing: bool = False
    status: JobStatus = JobStatus.PENDING
    """The status it was inserted in: WAITING or DEAD_LETTERED for a job with prerequisites
    not all DONE (issue 18); meaningless when `existing`."""


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
    interruptions: int = 0
    """Deliveries that ended without a result from the worker (see Reason.is_interruption)."""
    concurrency_key: str | None = None
    """The key the queue's per-key limits count the job under; None: none."""
    schedule_name: str | None = None
    """The schedule that enqueued the job (db/migrations/V19); None for a submitted one."""
    depends_on: tuple[UUID, ...] = ()
    """The jobs it was submitted to run after (issue 18); read by job_get and jobs_list only."""

    progress: float | None = None
    """The latest progress (0..1) the running attempt reported; read by GetJobStatus and
    ListJobs only (claims and reports do not read it)."""
    progress_message: str | None = None
    progress_updated_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    """When CancelJob asked for the RUNNING job to stop (see V18)."""
    cancelled_by: str | None = None
    """Who cancelled the job or asked to (the caller's label)."""


@record
class LimitedClaim:
    """What a limited claim (a paused or limited queue's, issue 18) took, and in how many
    seconds a rate limit frees its next start if it held jobs back (None: no rate did)."""

    assignments: list[Assignment]
    retry_after_s: float | None = None


@record
class Assignment:
    """A claimed job as handed to a worker: the job plus its fencing token (the job's attempt
    and worker, and the claim's random id) and time limit."""

    job: Job
    timeout_s: int | None  # the queue's TTL, used when the payload names no timeout
    claim_id: UUID | None = None
    unannounced: bool = False
    """Written by a transactional enqueue and not yet announced by any server: the claim's
    write publishes its SUBMITTED before its ASSIGNED (db/migrations/V14)."""
    trace_context: str | None = None
    """The trace context the worker's spans descend from: the job's stored one (NewJob's),
    replaced by the dispatch span's when tracing is on; None: untraced."""

    @property
    def ref(self) -> AttemptRef:
        """The fencing token the worker presents for this assignment."""
        assert self.job.worker_id is not None, "a claimed job has a worker"
        return AttemptRef(self.job.job_id, self.job.attempt, self.job.worker_id, self.claim_id)


@record
class DirectSubmit:
    """A job written straight to a worker (job_insert_assigned): inserted, and `assignment`
    when it was assigned in the same statement (None: written PENDING, for the dispatcher)."""

    submitted: Submitted
    assignment: Assignment | None


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
class JobEventPage:
    """A page of `job_events_page`: events oldest first, and the after_id to go on from (the
    last event's id when the page is full, else the newest id that was visible; never less than
    the after_id asked for)."""

    events: list[JobEvent]
    last_id: int


@record
class OutboxEvent:
    """An event waiting in the event outbox to be published (db/migrations/V15): a job_events
    row as the publisher sends it, in the plainest types (ids as text, the time in epoch
    microseconds: tens of thousands of these are encoded a second), and the correlation id of
    the request that submitted its job. `job_id` None: the job was deleted since (with its
    history), nothing is left to publish. `batch_id`: the outbox row that holds it (one per
    writing statement), which leaves the outbox once all its events are acknowledged."""

    batch_id: int
    event_id: int
    job_id: str | None
    queue_name: str
    from_status: str | None
    to_status: str
    worker_id: str | None
    reason: str
    detail: str | None
    attempt: int | None
    occurred_us: int
    correlation_id: str | None


@record
class OutboxLag:
    """How far behind event publishing is: events waiting, the age of the oldest (None when
    none waits), events published so far, the replica holding the publisher's lease, and how
    long ago the last lease ran out (negative while one is held; infinite: never held)."""

    events: int
    oldest_s: float | None
    published: int
    owner: str | None
    idle_s: float


@record
class AttemptRef:
    """The fencing token a worker presents: which attempt of which job, held by which worker,
    under which claim. The claim id tells apart two claims with the same attempt number (a
    claim lost in a database crash and made again); None never matches a stored claim."""

    job_id: UUID
    attempt: int
    worker_id: UUID
    claim_id: UUID | None


@record
class AttemptResult:
    """What happened to one presented attempt: applied, an idempotent duplicate, or rejected."""

    job_id: UUID
    attempt: int
    accepted: bool
    message: str = ""


@record
class Failure:
    """A failed attempt to record: the fencing token (the claim id is a required keyword), the
    error text and why it failed (FAILED: the worker reported it).
    `refused`: the worker refused the job as one that can never run; it is dead-lettered at
    once (REFUSED) instead of retried."""

    job_id: UUID
    attempt: int
    worker_id: UUID
    error_message: str
    reason: Reason = Reason.FAILED
    refused: bool = False
    claim_id: UUID | None = field(kw_only=True)


@record
class Success:
    """A successful attempt to record, with its JSON-encoded (or raw) result; the claim id
    (part of the fencing token) is a required keyword."""

    job_id: UUID
    attempt: int
    worker_id: UUID
    result: bytes
    claim_id: UUID | None = field(kw_only=True)


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
    has_dependants: bool = False
    """A job that ended (DONE, DEAD_LETTERED) and that some WAITING job may wait for: the
    dependency resolver is woken for it (jobs.has_dependants, V20)."""

    @classmethod
    def submitted(cls, job_id: UUID, queue_name: str, created_at: datetime) -> Transition:
        """A new job: PENDING, reason SUBMITTED, at its created_at."""
        return cls(
            job_id=job_id,
            queue_name=queue_name,
            from_status=None,
            to_status=JobStatus.PENDING,
            reason=Reason.SUBMITTED,
            worker_id=None,
            attempt=0,
            created_at=created_at,
            started_at=None,
            occurred_at=created_at,
        )


@record
class OperatorChange:
    """What an operator action (cancel, manual retry) did to one job: the job as it is now, the
    status it left, and whether a transactional enqueue wrote it and no server had announced it
    yet (its SUBMITTED is then published first; db/migrations/V14)."""

    job: Job
    was: JobStatus
    unannounced: bool = False
    has_dependants: bool = False
    """Some job was submitted to run after this one (jobs.has_dependants, V20)."""
    requested: bool = False
    """A cancel of a RUNNING job: only requested (the job is still RUNNING, `was` too); no
    state changed, so nothing is published."""


@record
class AttemptProgress:
    """A worker's latest progress of one attempt (ReportProgress), fenced like its reports."""

    ref: AttemptRef
    fraction: float
    message: str = ""


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
    max_interruptions: int = 3
    """Interruptions a job survives; the next one dead-letters it (POISON)."""
    flow: FlowLimits = FlowLimits()
    """Paused, concurrency and rate limits (jobq.domain.flow_limits)."""


@record
class QueueStats:
    queue_name: str
    counts: dict[JobStatus, int] = field(default_factory=dict)
    oldest_pending_age_s: float = 0.0
    total_retries: int = 0
    max_interruptions: int = 3
    total_interruptions: int = 0
    queue: Queue | None = None
    """The queue's settings (paused, limits)."""


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
    incarnation: UUID | None = None
    """The process registered under this id now (None: none issued yet)."""


@record
class Registration:
    """What RegisterWorker did: the worker as stored, the incarnation of the registering
    process, and — when a new process took over the id (`restarted`) — the jobs its
    predecessor held, released in the same transaction (WORKER_RESTARTED, or POISON)."""

    worker: Worker
    incarnation: UUID
    restarted: bool
    released: list[Transition]


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
