"""The errors the Python SDK raises: one base, a call the server refused, and how a job ended.

`wait()`/`result()` raise a `JobError` subclass when the job did not succeed, carrying the job
as it ended and the error message the worker (or the server) recorded:

- `JobFailed`: its attempts failed and its retries ran out (reason RETRIES_EXHAUSTED);
- `JobCancelled`: someone cancelled it (reason CANCELLED);
- `JobDeadLettered`: any dead-lettering, the two above included (REFUSED, POISON, TTL_EXPIRED
  ...), so `except JobDeadLettered` catches every way a job can end without a result.

A wait that runs out of time raises the built-in `TimeoutError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobq.client.job_info import JobInfo

__all__ = [
    "CallFailed",
    "ClientError",
    "ConfigurationError",
    "JobCancelled",
    "JobDeadLettered",
    "JobError",
    "JobFailed",
    "SubmitManyFailed",
]


class ClientError(Exception):
    """Every error of `jobq.client` derives from this."""


class ConfigurationError(ClientError):
    """The connection settings are unusable (a bad value, an unreadable TLS or token file)."""


class CallFailed(ClientError):
    """The server refused a call, or could not be reached after the retries.

    `code` is the gRPC status code name (`"NOT_FOUND"`, `"INVALID_ARGUMENT"`, `"UNAVAILABLE"`
    ...), `details` the server's message."""

    def __init__(self, code: str, details: str, method: str = "") -> None:
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{code}: {details}" if details else f"{where}{code}")
        self.code = code
        self.details = details
        self.method = method


class JobError(ClientError):
    """A waited-for job ended without success; `job` is how it ended."""

    def __init__(self, job: JobInfo, reason: str = "") -> None:
        message = job.error_message or "no error message"
        because = f" ({reason})" if reason else ""
        super().__init__(f"job {job.job_id} {job.status.value}{because}: {message}")
        self.job = job
        self.job_id = job.job_id
        self.reason = reason
        self.error_message = job.error_message


class JobDeadLettered(JobError):
    """The job was dead-lettered: retries exhausted, cancelled, refused by its worker, a poison
    job or its TTL expired (`reason` says which, when the server's log of the job tells)."""


class JobFailed(JobDeadLettered):
    """The job ran and failed at every attempt its retries allowed (reason RETRIES_EXHAUSTED)."""


class JobCancelled(JobDeadLettered):
    """The job was cancelled before it ran (reason CANCELLED)."""


class SubmitManyFailed(ClientError):
    """Some jobs of a `submit_many` were refused; every other job was submitted.

    `results` is parallel to the jobs given: the submitted job's id, or the error of that job."""

    def __init__(self, results: list[str | ClientError]) -> None:
        errors = {i: r for i, r in enumerate(results) if isinstance(r, ClientError)}
        first_index, first = next(iter(errors.items()))
        super().__init__(
            f"{len(errors)} of {len(results)} jobs were refused (the others were submitted); "
            f"the first, job {first_index}: {first}"
        )
        self.results = results
        self.errors = errors
