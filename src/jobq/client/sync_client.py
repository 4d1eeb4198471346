"""`jobq.Client`: the blocking Python SDK, safe to share between threads.

    with jobq.Client() as client:                       # JQ_CTL_* settings, like jq-ctl
        job = client.submit(resize, "a.png", width=100, queue="images")
        print(job.result(timeout=60))                   # the handler's return value

Submits from many threads are coalesced into SubmitJobs calls (`SyncBatcher`); every submit
carries an idempotency key, so the retries of UNAVAILABLE and DEADLINE_EXCEEDED never create a
job twice. Waiting is pushed by the server (WatchJobs), never polled.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from jobq.client.batch_plan import BatchPlan, Submitted
from jobq.client.connection import (
    ConnectionSettings,
    call_metadata,
    open_channel,
    resolve_settings,
)
from jobq.client.errors import CallFailed, ClientError, SubmitManyFailed
from jobq.client.job_info import JobEventInfo, JobInfo, JobStatus
from jobq.client.job_spec import (
    DEFAULT_QUEUE,
    Delay,
    Handler,
    JobSpec,
    command_job,
    handler_job,
    outcome,
    submit_options,
)
from jobq.client.queue_flow import QueueInfo, RateSpec, limits_request
from jobq.client.retry import DEFAULT_RETRY, RetryPolicy, is_retryable
from jobq.client.schedules import MissedTicks, ScheduleInfo, schedule_request
from jobq.client.sync_batcher import SyncBatcher
from jobq.client.sync_watch import call_failed, watch_ended
from jobq.client.watching import MAX_WATCHED, dead_letter_reason, status_to_proto
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import admin_service_pb2_grpc, job_service_pb2_grpc
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import schedules_pb2 as spb

__all__ = ["DEFAULT_LINGER_S", "DEFAULT_MAX_BATCH", "Client", "Job"]

Reply = TypeVar("Reply", bound=Message)
DEFAULT_LINGER_S = 0.001
DEFAULT_MAX_BATCH = 1000
"""The server's default limits.max_batch_size; a smaller server limit is learnt from its error."""


class Job:
    """A submitted job: its id, and the calls about it."""

    def __init__(self, client: Client, job_id: str, *, existing: bool = False) -> None:
        self._client = client
        self.id = job_id
        self.existing = existing
        """True when the idempotency key already held this job: this submit created nothing."""

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def info(self) -> JobInfo:
        return self._client.get(self.id)

    def status(self) -> JobStatus:
        return self._client.get(self.id).status

    def wait(self, timeout: float | None = None) -> JobInfo:
        return self._client.wait(self.id, timeout)

    def result(self, timeout: float | None = None) -> Any:
        return self._client.result(self.id, timeout)

    def cancel(self) -> JobInfo:
        return self._client.cancel(self.id)

    def retry(self) -> JobInfo:
        return self._client.retry(self.id)

    def logs(self) -> list[JobEventInfo]:
        return self._client.logs(self.id)


class Client:
    """A connection to jq-server (JobService). Close it, or use it as a context manager."""

    def __init__(
        self,
        server_addr: str | None = None,
        *,
        timeout_s: float | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        token: str | None = None,
        token_file: str | None = None,
        config_file: str | Path | None = None,
        settings: ConnectionSettings | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        auto_batch: bool = True,
        linger_s: float = DEFAULT_LINGER_S,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        """Connect (lazily: the first call opens the connection). `settings` replaces every
        other connection argument; without it they come from the arguments, the environment
        (JQ_CTL_*) and `config_file`'s `ctl` section, as for jq-ctl."""
        self.settings = settings or resolve_settings(
            server_addr,
            timeout_s=timeout_s,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            token=token,
            token_file=token_file,
            config_file=config_file,
        )
        self._retry = retry
        self._metadata = call_metadata(self.settings)
        self._channel = open_channel(self.settings)
        self._stub = job_service_pb2_grpc.JobServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._admin = admin_service_pb2_grpc.AdminServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._max_batch = max_batch
        self._limit_lock = threading.Lock()
        self._batcher = (
            SyncBatcher(self._send_requests, linger_s=linger_s, max_batch=max_batch)
            if auto_batch
            else None
        )

    # lifecycle

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # calls

    def _call(
        self,
        method: str,
        request: Message,
        reply: type[Reply],
        *,
        submit: bool = False,
        retry: bool = True,
        admin: bool = False,
    ) -> Reply:
        rpc: Callable[..., Any] = getattr(self._admin if admin else self._stub, method)
        tries, started = 0, time.monotonic()
        while True:
            tries += 1
            try:
                result = rpc(request, timeout=self.settings.timeout_s, metadata=self._metadata)
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else None
                wait = self._retry.wait_before_retry(tries, time.monotonic() - started)
                if retry and wait is not None and is_retryable(code, idempotent_submit=submit):
                    time.sleep(wait)
                    continue
                raise call_failed(exc, method) from None
            assert isinstance(result, reply)
            return result

    # submitting

    def submit(
        self,
        handler: Handler,
        /,
        *args: Any,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        delay: Delay | None = None,
        not_before: datetime | None = None,
        max_retries: int | None = None,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        depends_on: Iterable[object] | None = None,
        **kwargs: Any,
    ) -> Job:
        """Submit a job that calls the Python `handler` (a @jobq.task function, a module-level
        function a worker imports, or a registered name) with `args` and `kwargs`. Returns once
        the job is committed. With `depends_on` (jobs or job ids), it runs only once they are
        all DONE (README, "Dependencies")."""
        options = submit_options(
            queue,
            priority,
            delay,
            not_before,
            max_retries,
            idempotency_key,
            concurrency_key=concurrency_key,
            depends_on=depends_on,
        )
        return self.submit_job(handler_job(handler, args, kwargs, options))

    def submit_command(
        self,
        argv: Sequence[str],
        /,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_s: float | None = None,
        stdin: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        delay: Delay | None = None,
        not_before: datetime | None = None,
        max_retries: int | None = None,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        depends_on: Iterable[object] | None = None,
    ) -> Job:
        """Submit a job that runs `argv` without a shell; its result is the command's stdout."""
        options = submit_options(
            queue,
            priority,
            delay,
            not_before,
            max_retries,
            idempotency_key,
            concurrency_key=concurrency_key,
            depends_on=depends_on,
        )
        spec = command_job(
            argv, env=env, cwd=cwd, timeout_s=timeout_s, stdin=stdin, options=options
        )
        return self.submit_job(spec)

    def submit_job(self, spec: JobSpec) -> Job:
        """Submit a prepared job (`jobq.client.handler_job`, `command_job`, `Task.job()`)."""
        request = spec.to_request()
        if self._batcher is not None:
            submitted = self._batcher.submit(request)
        else:
            [result] = self._send_requests([request])
            if isinstance(result, ClientError):
                raise result
            submitted = result
        return Job(self, submitted.job_id, existing=submitted.existing)

    def submit_many(self, jobs: Iterable[JobSpec], *, max_batch: int | None = None) -> list[Job]:
        """Submit many jobs with SubmitJobs, in batches of at most `max_batch` (default: the
        client's, at most the server's limit). Returns the jobs in order.

        Raises:
            SubmitManyFailed: some jobs were refused; every other one was submitted, and the
                error's `results` say which is which.
        """
        requests = [spec.to_request() for spec in jobs]
        if not requests:
            return []
        outcomes = self._send_requests(requests, max_batch)
        if any(isinstance(o, ClientError) for o in outcomes):
            raise SubmitManyFailed(
                [o if isinstance(o, ClientError) else o.job_id for o in outcomes]
            )
        return [
            Job(self, o.job_id, existing=o.existing) for o in outcomes if isinstance(o, Submitted)
        ]

    def _send_requests(
        self, requests: Sequence[jpb.SubmitJobRequest], max_batch: int | None = None
    ) -> list[Submitted | ClientError]:
        plan = BatchPlan(len(requests), min(max_batch or self._max_batch, self._max_batch))
        while (batch := plan.next_batch()) is not None:
            try:
                if len(batch) == 1:
                    single = self._call(
                        "SubmitJob", requests[batch[0]], jpb.SubmitJobResponse, submit=True
                    )
                    plan.succeeded(batch, [single.job_id], [single.existing])
                else:
                    many = self._call(
                        "SubmitJobs",
                        jpb.SubmitJobsRequest(jobs=[requests[i] for i in batch]),
                        jpb.SubmitJobsResponse,
                        submit=True,
                    )
                    plan.succeeded(batch, many.job_ids, many.existing)
            except CallFailed as exc:
                plan.failed(batch, exc)
        if plan.max_batch < self._max_batch:
            with self._limit_lock:  # the server's limit, learnt: later batches respect it
                self._max_batch = min(self._max_batch, plan.max_batch)
        return plan.results()

    # reading and changing jobs

    def get(self, job_id: str) -> JobInfo:
        """The job as it is now (CallFailed NOT_FOUND for an unknown id)."""
        reply = self._call(
            "GetJobStatus", jpb.GetJobStatusRequest(job_id=job_id), jpb.GetJobStatusResponse
        )
        return JobInfo.from_proto(reply.job)

    def cancel(self, job_id: str) -> JobInfo:
        """PENDING or ASSIGNED → DEAD_LETTERED (CANCELLED); for a RUNNING job the cancel is
        requested (the JobInfo is still RUNNING, `cancel_requested_at` set) and the job ends
        DEAD_LETTERED (CANCELLED) once its worker stopped it; CallFailed FAILED_PRECONDITION
        for a job in any other state. Not repeated on failure (see `jobq.client.retry`)."""
        reply = self._call(
            "CancelJob", jpb.CancelJobRequest(job_id=job_id), jpb.CancelJobResponse, retry=False
        )
        return JobInfo.from_proto(reply.job)

    def retry(self, job_id: str) -> JobInfo:
        """FAILED or DEAD_LETTERED → PENDING (MANUAL_RETRY). Not repeated on failure."""
        reply = self._call(
            "RetryJob", jpb.RetryJobRequest(job_id=job_id), jpb.RetryJobResponse, retry=False
        )
        return JobInfo.from_proto(reply.job)

    def logs(self, job_id: str) -> builtins.list[JobEventInfo]:
        """The job's state changes, oldest first."""
        reply = self._call(
            "GetJobLogs", jpb.GetJobLogsRequest(job_id=job_id), jpb.GetJobLogsResponse
        )
        return [JobEventInfo.from_proto(event) for event in reply.events]

    # waiting

    def wait(self, job_id: str, timeout: float | None = None) -> JobInfo:
        """Block until the job has ended and return it as it ended (DONE).

        Raises:
            JobFailed, JobCancelled, JobDeadLettered: it was dead-lettered (see errors).
            TimeoutError: it had not ended within `timeout` seconds (None: no limit).
            CallFailed: e.g. NOT_FOUND for an unknown id.
        """
        job = self._watch_one(job_id, timeout)
        outcome(job, self._reason(job))
        return job

    def result(self, job_id: str, timeout: float | None = None) -> Any:
        """Block until the job has ended; return a handler's decoded return value (a command's
        stdout as bytes). Raises as `wait()` does."""
        job = self._watch_one(job_id, timeout)
        return outcome(job, self._reason(job))

    def wait_many(
        self, job_ids: Sequence[str], timeout: float | None = None
    ) -> builtins.list[JobInfo]:
        """Block until every job has ended; return them in order, whatever their outcome (one
        WatchJobs call per 1000 ids). TimeoutError when they have not all ended in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ended: dict[str, JobInfo] = {}
        unique = list(dict.fromkeys(job_ids))
        for start in range(0, len(unique), MAX_WATCHED):
            chunk = unique[start : start + MAX_WATCHED]
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            ended.update(self._watch(chunk, remaining))
        return [ended[job_id] for job_id in job_ids]

    def _reason(self, job: JobInfo) -> str:
        return dead_letter_reason(job, self.logs) if job.status is JobStatus.DEAD_LETTERED else ""

    def _watch_one(self, job_id: str, timeout: float | None) -> JobInfo:
        return self._watch([job_id], timeout)[job_id]

    def _watch(self, job_ids: Sequence[str], timeout: float | None) -> dict[str, JobInfo]:
        return watch_ended(self._stub, self._metadata, self._retry, job_ids, timeout)

    # queues' flow control (AdminService, admin scope; README "Flow control")

    def pause_queue(self, name: str) -> QueueInfo:
        """Pause a queue: it accepts jobs, but no server dispatches them until resumed."""
        reply = self._call(
            "PauseQueue", apb.PauseQueueRequest(name=name), apb.PauseQueueResponse, admin=True
        )
        return QueueInfo.from_proto(reply.queue)

    def resume_queue(self, name: str) -> QueueInfo:
        """Resume a paused queue: its jobs are dispatched again at once."""
        reply = self._call(
            "ResumeQueue", apb.ResumeQueueRequest(name=name), apb.ResumeQueueResponse, admin=True
        )
        return QueueInfo.from_proto(reply.queue)

    def set_queue_limits(
        self,
        name: str,
        *,
        max_running: int | None = None,
        key_max_running: int | None = None,
        rate: RateSpec | None = None,
        key_rate: RateSpec | None = None,
    ) -> QueueInfo:
        """Set a queue's concurrency and rate limits (None leaves one as it is, 0 removes it;
        a rate is "10/1s" or (limit, seconds)). Jobs over a limit wait and start as room
        frees; a job's `concurrency_key` is what the per-key limits count."""
        request = limits_request(
            name,
            max_running=max_running,
            key_max_running=key_max_running,
            rate=rate,
            key_rate=key_rate,
        )
        reply = self._call("SetQueueLimits", request, apb.SetQueueLimitsResponse, admin=True)
        return QueueInfo.from_proto(reply.queue)

    # schedules (AdminService: creating and changing them needs the admin scope)

    def create_schedule(
        self,
        name: str,
        job: JobSpec,
        *,
        cron: str | None = None,
        time_zone: str | None = None,
        every: float | timedelta | None = None,
        missed: MissedTicks = "skip",
    ) -> ScheduleInfo:
        """Create a schedule that enqueues `job` (its payload, queue, priority and max_retries)
        at every tick of `cron` (five fields, in `time_zone`, default UTC) or `every` seconds.
        `missed`: what ticks missed while no jq-server ran get (README "Schedules")."""
        request = schedule_request(
            name, job, cron=cron, time_zone=time_zone, every=every, missed=missed
        )
        reply = self._call(
            "CreateSchedule", request, spb.CreateScheduleResponse, retry=False, admin=True
        )
        return ScheduleInfo.from_proto(reply.schedule)

    def list_schedules(self) -> builtins.list[ScheduleInfo]:
        """Every schedule, by name."""
        reply = self._call(
            "ListSchedules", spb.ListSchedulesRequest(), spb.ListSchedulesResponse, admin=True
        )
        return [ScheduleInfo.from_proto(schedule) for schedule in reply.schedules]

    def get_schedule(self, name: str) -> ScheduleInfo:
        """One schedule, with its next run times (`upcoming`)."""
        reply = self._call(
            "GetSchedule", spb.GetScheduleRequest(name=name), spb.GetScheduleResponse, admin=True
        )
        return ScheduleInfo.from_proto(reply.schedule)

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule; the jobs it enqueued stay."""
        self._call(
            "DeleteSchedule",
            spb.DeleteScheduleRequest(name=name),
            spb.DeleteScheduleResponse,
            retry=False,
            admin=True,
        )

    def pause_schedule(self, name: str) -> ScheduleInfo:
        """Stop a schedule's ticks until it is resumed."""
        reply = self._call(
            "PauseSchedule",
            spb.PauseScheduleRequest(name=name),
            spb.PauseScheduleResponse,
            admin=True,
        )
        return ScheduleInfo.from_proto(reply.schedule)

    def resume_schedule(self, name: str) -> ScheduleInfo:
        """Resume a paused schedule at its next future tick."""
        reply = self._call(
            "ResumeSchedule",
            spb.ResumeScheduleRequest(name=name),
            spb.ResumeScheduleResponse,
            admin=True,
        )
        return ScheduleInfo.from_proto(reply.schedule)

    # listing (last: `list` would shadow the builtin in the annotations above)

    def list(
        self,
        *,
        queue: str | None = None,
        status: JobStatus | str | None = None,
        page_size: int = 100,
        limit: int | None = None,
    ) -> Iterator[JobInfo]:
        """Jobs newest first, optionally of one queue and status, fetched page by page as the
        iterator is consumed; at most `limit` of them (None: all)."""
        token = ""
        returned = 0
        while True:
            reply = self._call(
                "ListJobs",
                jpb.ListJobsRequest(
                    queue_name=queue or "",
                    status=status_to_proto(status),
                    limit=page_size,
                    page_token=token,
                ),
                jpb.ListJobsResponse,
            )
            for job in reply.jobs:
                if limit is not None and returned >= limit:
                    return
                returned += 1
                yield JobInfo.from_proto(job)
            token = reply.next_page_token
            if not token:
                return
