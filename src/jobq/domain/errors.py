"""Typed domain errors. One mapping (in the RPC layer) turns them into gRPC status codes."""

from __future__ import annotations

from collections.abc import Sequence


class JobqError(Exception):
    """Base of every error jobq raises on purpose. The message is for humans."""


class InvalidArgument(JobqError):
    """The caller sent something malformed: a bad id, name, size or range."""


class NotFound(JobqError):
    """The named object does not exist."""


class JobNotFound(NotFound):
    def __init__(self, job_id: object) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class PrerequisiteNotFound(NotFound):
    """A job named in a submit's depends_on does not exist (nothing was written)."""

    def __init__(self, job_id: object) -> None:
        super().__init__(f"depends_on: job {job_id} not found")
        self.job_id = job_id


class QueueNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"queue '{name}' not found")
        self.name = name


class WorkerNotFound(NotFound):
    def __init__(self, worker_id: object) -> None:
        super().__init__(f"worker {worker_id} not found")
        self.worker_id = worker_id


class AlreadyExists(JobqError):
    """The object to create exists already."""


class QueueAlreadyExists(AlreadyExists):
    def __init__(self, name: str) -> None:
        super().__init__(f"queue '{name}' already exists")
        self.name = name


class FailedPrecondition(JobqError):
    """The object is not in a state that allows the operation."""


class InvalidTransition(FailedPrecondition):
    """A job cannot move from its current status by this operation."""

    def __init__(self, job_id: object, action: str, status: str) -> None:
        super().__init__(f"cannot {action} job {job_id}: it is {status}")
        self.job_id = job_id
        self.action = action
        self.status = status


class StaleAttempt(FailedPrecondition):
    """A report names an attempt that is no longer the job's current one (fencing)."""

    def __init__(self, job_id: object, attempt: int) -> None:
        super().__init__(f"attempt {attempt} of job {job_id} is no longer current")
        self.job_id = job_id
        self.attempt = attempt


SUPERSEDED = "superseded by a newer process of worker"
"""The words every refusal of a superseded worker process starts with: the worker runtime
recognises the refusal by them (its status code, FAILED_PRECONDITION, has other causes too)."""


class WorkerSuperseded(FailedPrecondition):
    """A call presented an incarnation that is not the worker's current one: a newer process
    registered under the same worker id. The call changes nothing; the process must stop (not
    register again and fight the newer one)."""

    def __init__(self, worker_id: object) -> None:
        super().__init__(
            f"{SUPERSEDED} {worker_id}: this process must stop (its jobs were released when "
            "the newer one registered)"
        )
        self.worker_id = worker_id


def is_superseded(message: str) -> bool:
    """True when a FAILED_PRECONDITION's message is a WorkerSuperseded refusal."""
    return message.startswith(SUPERSEDED)


class QueueNotEmpty(FailedPrecondition):
    """A queue to delete still holds jobs, finished ones included: deleting it would delete them
    and their history, so only a forced delete may."""

    def __init__(self, name: str, jobs: int, unfinished: int) -> None:
        super().__init__(
            f"queue '{name}' holds {jobs} job(s), {unfinished} unfinished; deleting it deletes "
            "them and their history: use --force (DeleteQueue force=true)"
        )
        self.name = name
        self.jobs = jobs
        self.unfinished = unfinished


class QueueServedByLiveWorkers(FailedPrecondition):
    """A queue to delete is served by live (ONLINE or DRAINING) workers; not even a forced delete
    may take it from under them: they would keep serving a queue nobody can submit to."""

    SHOWN = 5
    """Worker ids named in the message; the rest are counted."""

    def __init__(self, name: str, worker_ids: Sequence[object]) -> None:
        shown = ", ".join(str(worker_id) for worker_id in worker_ids[: self.SHOWN])
        more = len(worker_ids) - self.SHOWN
        if more > 0:
            shown += f" and {more} more"
        super().__init__(
            f"queue '{name}' is served by {len(worker_ids)} live worker(s) ({shown}): stop them "
            "or restart them without this queue before deleting it, even with --force "
            "(jq-ctl worker shutdown ID; a drained worker counts until it stops)"
        )
        self.name = name
        self.worker_ids = tuple(worker_ids)


class Unauthenticated(JobqError):
    """No valid credential came with the call (a missing or unknown token, no certificate)."""


class PermissionDenied(JobqError):
    """The caller is known but its credential lacks the scope the call needs."""


class Unavailable(JobqError):
    """A required backing service (PostgreSQL) cannot be reached right now."""


class ListenError(JobqError):
    """A port cannot be opened (in use, not an address of this machine, no permission)."""


class ConfigError(JobqError):
    """The configuration is invalid; the message names the field."""


class MigrationError(JobqError):
    """The database schema cannot be brought up to date safely."""


class ServiceFailed(JobqError):
    """A background loop of the process kept failing in a way restarting does not fix (a bug),
    so the process stopped; the message names the loop and its last error."""


class ScheduleNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"schedule '{name}' not found")
        self.name = name


class ScheduleAlreadyExists(AlreadyExists):
    def __init__(self, name: str) -> None:
        super().__init__(f"schedule '{name}' already exists")
        self.name = name
