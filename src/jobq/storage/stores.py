"""The typed storage boundary: what services may ask of the durable store.

Methods are `noun_verb` operations with typed parameters (River's driver interface). Every
method that changes a job's status writes the job and its job_events rows atomically. The
PostgreSQL implementation (`storage/postgres/`) is the only production one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol
from uuid import UUID

from jobq.domain.flow_limits import FlowChange
from jobq.domain.history import (
    CreateOutcome,
    DropOutcome,
    HistoryStats,
    JobPartition,
    Partition,
    PartmanOutcome,
    PartmanState,
)
from jobq.domain.records import (
    Assignment,
    AttemptProgress,
    AttemptRef,
    AuditEvent,
    AuditPage,
    DirectSubmit,
    Failure,
    Job,
    JobEvent,
    JobEventPage,
    JobPage,
    LimitedClaim,
    NewAuditEvent,
    NewJob,
    OperatorChange,
    OutboxEvent,
    OutboxLag,
    Queue,
    QueueStats,
    Registration,
    ReportOutcome,
    Submitted,
    Success,
    Transition,
    Worker,
)
from jobq.domain.retry import RetryPolicy
from jobq.domain.schedules import NewSchedule, Schedule, TickPlan
from jobq.domain.states import JobStatus, Reason, WorkerStatus


@dataclass(frozen=True, slots=True)
class ActiveDepth:
    """The unfinished jobs, counted in one pass for the queue gauges."""

    counts: dict[tuple[str, JobStatus], int]
    """Jobs per (queue, status), only the pairs that have some."""
    oldest_pending_s: dict[str, float]
    """Per queue with a runnable PENDING job: seconds since the oldest became runnable."""


class QueueStore(Protocol):
    async def queue_create(
        self,
        name: str,
        max_retries: int = 3,
        ttl_seconds: int | None = None,
        max_interruptions: int = 3,
    ) -> Queue: ...
    async def queue_get(self, name: str) -> Queue: ...
    async def queue_list(self) -> list[Queue]: ...
    async def queue_delete(self, name: str, *, force: bool = False) -> int: ...
    async def queue_stats(self, name: str) -> QueueStats: ...
    async def queue_set_flow(self, name: str, change: FlowChange) -> Queue: ...
    async def queues_flow_limited(self) -> set[str]: ...


class WorkerStore(Protocol):
    """Workers and their incarnations: a registration without an incarnation is a new process
    (it releases what the worker id held); calls presenting another incarnation than the
    stored one raise WorkerSuperseded and change nothing."""

    async def worker_register(
        self,
        worker_id: UUID,
        hostname: str,
        concurrency: int,
        queues: Sequence[str],
        incarnation: UUID | None = None,
    ) -> Registration: ...
    async def worker_heartbeat(
        self, worker_id: UUID, incarnation: UUID, active_job_count: int
    ) -> Worker: ...
    async def worker_deregister(
        self, worker_id: UUID, incarnation: UUID
    ) -> tuple[Worker, list[Transition]]: ...
    async def worker_get(self, worker_id: UUID) -> Worker: ...
    async def worker_list(self, status: WorkerStatus | None = None) -> list[Worker]: ...
    async def worker_set_status(
        self,
        worker_id: UUID,
        status: WorkerStatus,
        from_statuses: Collection[WorkerStatus] = ...,
    ) -> tuple[Worker, WorkerStatus]: ...
    async def worker_request_shutdown(self, worker_id: UUID) -> Worker: ...
    async def worker_counts(self) -> dict[WorkerStatus, int]: ...
    async def workers_online_by_queue(self) -> dict[str, int]: ...


class JobStore(Protocol):
    async def jobs_insert(
        self, jobs: Sequence[NewJob], *, notify: bool = True
    ) -> list[Submitted]: ...
    async def job_get(self, job_id: UUID) -> Job: ...
    async def jobs_list(
        self,
        *,
        queue_name: str | None = None,
        status: JobStatus | None = None,
        limit: int = 20,
        page_token: str = "",
    ) -> JobPage: ...
    async def job_cancel(self, job_id: UUID, cancelled_by: str = "anonymous") -> OperatorChange: ...
    async def job_retry_manual(self, job_id: UUID) -> OperatorChange: ...
    async def jobs_claim(
        self, worker_id: UUID, queues: Sequence[str], limit: int, *, incarnation: UUID
    ) -> list[Assignment]: ...
    async def jobs_claim_limited(
        self, worker_id: UUID, queue: str, limit: int, *, incarnation: UUID
    ) -> LimitedClaim: ...
    async def job_insert_assigned(
        self, job: NewJob, worker_id: UUID, *, incarnation: UUID
    ) -> DirectSubmit | None: ...
    async def jobs_start(self, attempts: Sequence[AttemptRef]) -> ReportOutcome: ...
    async def jobs_complete(self, successes: Sequence[Success]) -> ReportOutcome: ...
    async def jobs_fail(
        self, failures: Sequence[Failure], policy: RetryPolicy, now: datetime | None = None
    ) -> ReportOutcome: ...
    async def jobs_release(
        self, attempts: Sequence[AttemptRef], reason: Reason
    ) -> ReportOutcome: ...
    async def jobs_interrupt(
        self, attempts: Sequence[AttemptRef], reason: Reason, detail: str
    ) -> list[Transition]: ...
    async def jobs_held_by_worker(self, worker_id: UUID) -> list[AttemptRef]: ...
    async def jobs_count_by_status(self) -> dict[JobStatus, int]: ...
    async def dependants_resolve(
        self, ended: Sequence[UUID] | None, limit: int
    ) -> list[Transition]: ...
    async def jobs_active_depth(self) -> ActiveDepth: ...
    async def jobs_finish_cancelled(
        self, attempts: Sequence[AttemptRef], details: Sequence[str]
    ) -> ReportOutcome: ...
    async def jobs_cancel_requested_for_worker(self, worker_id: UUID) -> list[tuple[UUID, int]]: ...
    async def jobs_record_progress(
        self, reports: Sequence[AttemptProgress]
    ) -> set[tuple[UUID, int]]: ...


class JobEventStore(Protocol):
    async def job_events_list(self, job_id: UUID) -> list[JobEvent]: ...
    async def job_events_page(
        self,
        *,
        after_id: int = 0,
        limit: int = 100,
        job_id: UUID | None = None,
        queue_name: str | None = None,
        newest: bool = False,
    ) -> JobEventPage:
        """Events with an id above `after_id`, of every job or one job and/or one queue, oldest
        first: the first `limit` of them, or the last `limit` when `newest`."""
        ...


class AuditStore(Protocol):
    """The audit trail of admin actions: append-only, read newest first."""

    async def audit_event_insert(self, event: NewAuditEvent) -> AuditEvent: ...
    async def audit_events_list(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        limit: int = 20,
        page_token: str = "",
    ) -> AuditPage: ...


class MaintenanceStore(Protocol):
    """What the recovery monitors need: lost workers, expired assignments (interruptions, like
    lost workers' jobs), TTL expiry."""

    async def workers_mark_lost(
        self, timeout_s: float, now: datetime | None, limit: int
    ) -> list[UUID]: ...
    async def jobs_held_by_offline_workers(
        self, timeout_s: float, now: datetime | None, limit: int
    ) -> list[AttemptRef]: ...
    async def jobs_expire_assignments(
        self, timeout_s: float, now: datetime | None, limit: int
    ) -> list[Transition]: ...
    async def jobs_expire_ttl(self, now: datetime | None, limit: int) -> list[Transition]: ...
    async def enqueued_jobs_take(self, limit: int) -> list[Transition]: ...


class EventOutboxStore(Protocol):
    """The event outbox (db/migrations/V15): committed job_events waiting to be published."""

    async def capture_set(self, on: bool) -> bool:
        """Turn the copying of job_events rows into the outbox on or off; True when this call
        changed it. Unavailable when a long transaction keeps the switch from its lock."""
        ...

    async def capture_on(self) -> bool: ...

    async def lease_take(self, owner: str, ttl_s: float) -> tuple[bool, str | None]:
        """Take or renew the publisher lease: (held now, previous owner)."""
        ...

    async def lease_release(self, owner: str) -> None: ...

    async def outbox_read(self, limit: int) -> list[OutboxEvent]:
        """The oldest waiting events, in id order: whole outbox rows (one per writing
        statement) up to about `limit` events, at least one row."""
        ...

    async def outbox_delete(self, batch_ids: Sequence[int]) -> None:
        """Published: take these outbox rows (every event of each acknowledged) out."""
        ...

    async def outbox_lag(self) -> OutboxLag: ...


class ScheduleStore(Protocol):
    """Schedules (db/migrations/V19) and the enqueue of their ticks."""

    async def schedule_create(self, schedule: NewSchedule, next_run_at: datetime) -> Schedule: ...
    async def schedule_get(self, name: str) -> Schedule: ...
    async def schedule_list(self) -> list[Schedule]: ...
    async def schedule_delete(self, name: str) -> None: ...
    async def schedule_pause(self, name: str) -> Schedule: ...
    async def schedule_resume(
        self, name: str, next_run_at: Callable[[Schedule], datetime]
    ) -> Schedule: ...
    async def schedule_fire_due(
        self, now: datetime, plan: Callable[[Schedule], TickPlan], job_id: UUID
    ) -> tuple[Schedule, TickPlan, Submitted | None] | None:
        """One due schedule's tick in one transaction (see PgScheduleStore); None: none due."""
        ...

    async def schedules_next_due(self) -> tuple[datetime | None, datetime]:
        """When the next active schedule falls due (None: none), and the database's time."""
        ...


@dataclass(frozen=True, slots=True)
class ActivitySample:
    """Job events committed (by every replica) since the last sample, and the backlog now."""

    last_id: int
    """The largest job_events id counted: where the next sample goes on from."""
    submitted: int
    started: int
    finished: int
    failed: int
    """Failed attempts, and dead letters that did not follow a failed attempt."""
    pending: int
    """PENDING jobs over every queue, counted up to the cap the caller passed."""


class DashboardStore(Protocol):
    """The dashboard overview's samples (server/web/history.py)."""

    async def dashboard_head(self) -> int:
        """The largest job_events id now (0: none)."""
        ...

    async def dashboard_activity(self, after_id: int, pending_cap: int) -> ActivitySample:
        """Events with an id above `after_id`, by kind, and PENDING jobs up to `pending_cap`."""
        ...


class JobPartitionStore(Protocol):
    """jobs' daily partitions by job id (db/migrations/V24), for the history maintainer
    (server/job_partition_maintainer.py) and its metrics."""

    async def job_partitions(self) -> list[JobPartition]: ...
    async def job_default_has_rows(
        self, default: JobPartition, lower: UUID, upper: UUID
    ) -> bool: ...
    async def job_partition_create(
        self, day: date, default: JobPartition
    ) -> tuple[CreateOutcome, int]:
        """Make `day`'s partition, moving in its finished jobs from the default one."""
        ...

    async def job_partition_live(self, partition: JobPartition) -> bool: ...
    async def job_partition_drop(self, partition: JobPartition) -> DropOutcome:
        """Detach and drop `partition` with its jobs' keys, ticks and edges, unless live or
        locked."""
        ...

    async def job_history_record(self, succeeded_at: datetime, held_back: int) -> None: ...
    async def job_history_stats(self) -> tuple[int, int, float | None]: ...


class HistoryPartitionStore(Protocol):
    """job_events' daily partitions (db/migrations/V23), for the history maintainer
    (server/history_maintainer.py) and its metrics."""

    async def history_partitions(self) -> list[Partition]: ...
    async def history_default_days(self) -> list[date]: ...
    async def history_partition_create(self, day: date, name: str | None = None) -> int | None:
        """Make `day`'s partition (named `name`, default jobq's spelling), moving in its rows
        from the default one; returns how many (None: job_events' lock was not granted in
        time, or the table was made meanwhile; nothing changed)."""
        ...

    async def history_live_partitions(self, partitions: list[Partition]) -> set[int]:
        """The oids of `partitions` holding an event of an unfinished job."""
        ...

    async def history_partition_drop(self, partition: Partition) -> DropOutcome:
        """Detach and drop `partition` unless it holds a live job's event or is locked."""
        ...

    async def history_lease(self, owner: str, seconds: float) -> bool: ...
    async def history_release(self, owner: str, succeeded_at: datetime, held_back: int) -> None: ...
    async def history_abandon(self, owner: str) -> None: ...
    async def history_stats(self) -> HistoryStats: ...


class HistoryPartmanStore(Protocol):
    """pg_partman, when installed in jobq's database: job_events registered with it and its
    maintenance run (storage/postgres/history_partman.py), for the history maintainer."""

    async def partman_state(self) -> PartmanState | None:
        """The extension's schema and version and job_events' registration; None: absent."""
        ...

    async def partman_register(
        self, state: PartmanState, premake_days: int, start: date, renames: list[tuple[str, str]]
    ) -> PartmanOutcome:
        """Rename the day partitions (`renames`), replace the default one, create_parent."""
        ...

    async def partman_maintain(self, state: PartmanState, premake_days: int) -> PartmanOutcome:
        """pg_partman's run_maintenance of job_events (premakes the days ahead)."""
        ...
