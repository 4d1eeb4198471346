"""Typed domain errors. One mapping (in the RPC layer) turns them into gRPC status codes."""

from __future__ import annotations


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


class QueueNotEmpty(FailedPrecondition):
    def __init__(self, name: str, active: int) -> None:
        super().__init__(
            f"queue '{name}' still holds {active} unfinished job(s); use force to delete it"
        )
        self.name = name
        self.active = active


class Unauthenticated(JobqError):
    """No valid credential came with the call (a missing or unknown token, no certificate)."""


class PermissionDenied(JobqError):
    """The caller is known but its credential lacks the scope the call needs."""


class Unavailable(JobqError):
    """A required backing service (PostgreSQL) cannot be reached right now."""


class ConfigError(JobqError):
    """The configuration is invalid; the message names the field."""


class MigrationError(JobqError):
    """The database schema cannot be brought up to date safely."""
