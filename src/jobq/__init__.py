"""jobq: a distributed job queue over PostgreSQL with a gRPC control plane.

The public Python API: `@jobq.task` marks a handler a worker may run (and gives it `.delay()`);
`jobq.Client` / `jobq.AsyncClient` submit jobs and wait for their results; `jobq.configure()`
sets up the client `.delay()` uses; `jobq.enqueue()` / `jobq.enqueue_sync()` write a job inside
the application's own PostgreSQL transaction; `jobq.current_job()` and `jobq.progress()` are
for handlers while the worker runs them (cancellation, progress). The client is imported on
first use, so `import jobq` (and jq-ctl's `--help`, and a worker importing task modules) does
not load gRPC for it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from jobq.running_job import CurrentJob, current_job, progress  # inside a running handler
from jobq.task import task  # the public decorator: `@jobq.task`

if TYPE_CHECKING:
    from jobq.client import (
        AsyncClient,
        AsyncJob,
        CallFailed,
        Client,
        ClientError,
        InvalidJob,
        Job,
        JobCancelled,
        JobDeadLettered,
        JobFailed,
        JobInfo,
        JobStatus,
        NotInTransaction,
        configure,
        enqueue,
        enqueue_sync,
    )

__all__ = [
    "AsyncClient",
    "AsyncJob",
    "CallFailed",
    "Client",
    "ClientError",
    "CurrentJob",
    "InvalidJob",
    "Job",
    "JobCancelled",
    "JobDeadLettered",
    "JobFailed",
    "JobInfo",
    "JobStatus",
    "NotInTransaction",
    "__version__",
    "configure",
    "current_job",
    "enqueue",
    "enqueue_sync",
    "progress",
    "task",
]

_FROM_CLIENT = frozenset(__all__) - {"__version__", "task", "CurrentJob", "current_job", "progress"}


def __getattr__(name: str) -> Any:
    """The client's names, imported when first asked for (PEP 562)."""
    if name in _FROM_CLIENT:
        import jobq.client

        return getattr(jobq.client, name)
    raise AttributeError(f"module 'jobq' has no attribute {name!r}")
