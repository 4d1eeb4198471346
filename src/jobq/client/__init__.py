"""The Python SDK of jobq: submit jobs, wait for their results, list, cancel and retry them.

    import jobq

    @jobq.task
    def add(a: int, b: int) -> int:
        return a + b

    job = add.delay(2, 3)            # the default client, configured from JQ_CTL_* or
    print(job.result(timeout=30))    # jobq.configure(); prints 5 once a worker ran it

    with jobq.Client("localhost:50051") as client:
        jobs = client.submit_many(add.job(i, i) for i in range(100))

Both also create, list, pause, resume and delete schedules (`create_schedule(name, job,
cron=... | every=...)`): a job enqueued at every tick of a cron expression or an interval.

`Client` blocks and may be shared by threads; `AsyncClient` is its asyncio twin. Both batch
concurrent submits into SubmitJobs calls and wait through WatchJobs (pushed, not polled).

`enqueue` (asyncpg) and `enqueue_sync` (psycopg 3) write a job with the application's own
PostgreSQL connection instead, inside its open transaction, so that it commits (or not) with
the application's own writes.
"""

from jobq.client.async_client import AsyncClient, AsyncJob
from jobq.client.batch_plan import Submitted
from jobq.client.connection import ConnectionSettings, resolve_settings
from jobq.client.default_client import configure, default_client, reset_default_client
from jobq.client.enqueue import NotInTransaction, enqueue, enqueue_sync
from jobq.client.errors import (
    CallFailed,
    ClientError,
    ConfigurationError,
    JobCancelled,
    JobDeadLettered,
    JobError,
    JobFailed,
    SubmitManyFailed,
)
from jobq.client.job_info import JobEventInfo, JobInfo, JobStatus
from jobq.client.job_spec import (
    InvalidJob,
    JobSpec,
    SubmitOptions,
    command_job,
    decode_result,
    handler_job,
)
from jobq.client.queue_flow import QueueInfo, RateSpec
from jobq.client.retry import RetryPolicy
from jobq.client.schedules import MissedTicks, ScheduleInfo
from jobq.client.sync_client import Client, Job

__all__ = [
    "AsyncClient",
    "AsyncJob",
    "CallFailed",
    "Client",
    "ClientError",
    "ConfigurationError",
    "ConnectionSettings",
    "InvalidJob",
    "Job",
    "JobCancelled",
    "JobDeadLettered",
    "JobError",
    "JobEventInfo",
    "JobFailed",
    "JobInfo",
    "JobSpec",
    "JobStatus",
    "MissedTicks",
    "NotInTransaction",
    "QueueInfo",
    "RateSpec",
    "RetryPolicy",
    "ScheduleInfo",
    "SubmitManyFailed",
    "SubmitOptions",
    "Submitted",
    "command_job",
    "configure",
    "decode_result",
    "default_client",
    "enqueue",
    "enqueue_sync",
    "handler_job",
    "reset_default_client",
    "resolve_settings",
]
