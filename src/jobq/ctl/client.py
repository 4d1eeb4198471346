"""jq-ctl's connection to jq-server: the channel (plain or TLS), the bearer token, the deadline,
and one typed method per RPC that turns a failed call into a one-line `CtlError`.

Imported only when a command really calls the server, so `--help` does not pay for gRPC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from jobq.ctl.errors import EXIT_USAGE, CtlError, describe_rpc_error
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import admin_service_pb2_grpc, job_service_pb2_grpc
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import schedules_pb2 as spb

Reply = TypeVar("Reply", bound=Message)
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ConnectionOptions:
    """Where jq-server is and how to talk to it (the `ctl` settings section)."""

    server_addr: str
    timeout_s: float
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    token: str = ""


def call_metadata(token: str) -> Metadata:
    """The metadata sent with every call: `authorization: Bearer <token>` when there is one.

    Per-call metadata rather than call credentials, because gRPC refuses call credentials on a
    plain-text channel and the token must be sent either way."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CtlError(f"cannot read {flag} file {path}: {reason}", EXIT_USAGE) from None


def channel_credentials(options: ConnectionOptions) -> grpc.ChannelCredentials | None:
    """TLS credentials from the PEM files, or None for a plain-text channel (no TLS option set).

    `--tls-ca` alone verifies the server; `--tls-cert` with `--tls-key` adds a client certificate
    (mutual TLS). Without `--tls-ca` the system's trusted roots verify the server."""
    if not (options.tls_ca or options.tls_cert or options.tls_key):
        return None
    if bool(options.tls_cert) != bool(options.tls_key):
        raise CtlError("--tls-cert and --tls-key must be given together", EXIT_USAGE)
    return grpc.ssl_channel_credentials(
        root_certificates=_read(options.tls_ca, "--tls-ca") if options.tls_ca else None,
        private_key=_read(options.tls_key, "--tls-key") if options.tls_key else None,
        certificate_chain=_read(options.tls_cert, "--tls-cert") if options.tls_cert else None,
    )


def open_channel(options: ConnectionOptions) -> grpc.Channel:
    """A TLS channel when a TLS option is set, else a plain-text one."""
    credentials = channel_credentials(options)
    if credentials is None:
        return grpc.insecure_channel(options.server_addr)
    return grpc.secure_channel(options.server_addr, credentials)


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _duration(value: timedelta) -> Duration:
    duration = Duration()
    duration.FromTimedelta(value)
    return duration


class Client:
    """The JobService and AdminService calls jq-ctl makes, each with the deadline and token."""

    def __init__(self, options: ConnectionOptions) -> None:
        self.options = options
        self._metadata = call_metadata(options.token)
        self._channel = open_channel(options)
        self._jobs = job_service_pb2_grpc.JobServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._admin = admin_service_pb2_grpc.AdminServiceStub(self._channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._channel.close()

    def _call(
        self, rpc: Callable[..., Any], request: Message, reply: type[Reply], subject: str = ""
    ) -> Reply:
        try:
            result = rpc(request, timeout=self.options.timeout_s, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = (exc.details() if isinstance(exc, grpc.Call) else None) or ""
            raise CtlError(
                describe_rpc_error(
                    code.name,
                    details,
                    server_addr=self.options.server_addr,
                    timeout_s=self.options.timeout_s,
                    subject=subject,
                )
            ) from None
        assert isinstance(result, reply)
        return result

    # JobService

    def submit_job(
        self,
        queue: str,
        payload: bytes,
        priority: int,
        max_retries: int | None,
        delay: timedelta | None,
        not_before: datetime | None,
        idempotency_key: str = "",
        concurrency_key: str = "",
        depends_on: Sequence[str] = (),
    ) -> jpb.SubmitJobResponse:
        request = jpb.SubmitJobRequest(
            queue_name=queue,
            payload=payload,
            priority=priority,
            idempotency_key=idempotency_key,
            concurrency_key=concurrency_key,
            depends_on=depends_on,
        )
        if max_retries is not None:
            request.max_retries = max_retries
        if delay is not None:
            request.delay.CopyFrom(_duration(delay))
        if not_before is not None:
            request.not_before.CopyFrom(_timestamp(not_before))
        return self._call(self._jobs.SubmitJob, request, jpb.SubmitJobResponse, f"queue '{queue}'")

    def job_status(self, job_id: str) -> jpb.GetJobStatusResponse:
        request = jpb.GetJobStatusRequest(job_id=job_id)
        return self._call(
            self._jobs.GetJobStatus, request, jpb.GetJobStatusResponse, f"job {job_id}"
        )

    def cancel_job(self, job_id: str) -> jpb.CancelJobResponse:
        request = jpb.CancelJobRequest(job_id=job_id)
        return self._call(self._jobs.CancelJob, request, jpb.CancelJobResponse, f"job {job_id}")

    def list_jobs(
        self, queue: str, status: str | None, limit: int, page_token: str
    ) -> jpb.ListJobsResponse:
        request = jpb.ListJobsRequest(
            queue_name=queue,
            status=f"JOB_STATUS_{status or 'UNSPECIFIED'}",
            limit=limit,
            page_token=page_token,
        )
        return self._call(self._jobs.ListJobs, request, jpb.ListJobsResponse, f"queue '{queue}'")

    def job_logs(self, job_id: str) -> jpb.GetJobLogsResponse:
        request = jpb.GetJobLogsRequest(job_id=job_id)
        return self._call(self._jobs.GetJobLogs, request, jpb.GetJobLogsResponse, f"job {job_id}")

    def list_job_events(
        self, job_id: str, queue: str, after_id: int, limit: int, newest: bool
    ) -> jpb.ListJobEventsResponse:
        request = jpb.ListJobEventsRequest(
            job_id=job_id, queue_name=queue, after_id=after_id, limit=limit, newest=newest
        )
        subject = f"job {job_id}" if job_id else f"queue '{queue}'" if queue else ""
        return self._call(self._jobs.ListJobEvents, request, jpb.ListJobEventsResponse, subject)

    def retry_job(self, job_id: str) -> jpb.RetryJobResponse:
        request = jpb.RetryJobRequest(job_id=job_id)
        return self._call(self._jobs.RetryJob, request, jpb.RetryJobResponse, f"job {job_id}")

    # AdminService

    def list_queues(self) -> apb.ListQueuesResponse:
        return self._call(self._admin.ListQueues, apb.ListQueuesRequest(), apb.ListQueuesResponse)

    def create_queue(
        self,
        name: str,
        max_retries: int | None,
        ttl_seconds: int | None,
        max_interruptions: int | None = None,
    ) -> apb.CreateQueueResponse:
        request = apb.CreateQueueRequest(name=name)
        if max_retries is not None:
            request.max_retries = max_retries
        if ttl_seconds is not None:
            request.ttl_seconds = ttl_seconds
        if max_interruptions is not None:
            request.max_interruptions = max_interruptions
        return self._call(
            self._admin.CreateQueue, request, apb.CreateQueueResponse, f"queue '{name}'"
        )

    def delete_queue(self, name: str, force: bool) -> apb.DeleteQueueResponse:
        request = apb.DeleteQueueRequest(name=name, force=force)
        return self._call(
            self._admin.DeleteQueue, request, apb.DeleteQueueResponse, f"queue '{name}'"
        )

    def queue_stats(self, name: str) -> apb.GetQueueStatsResponse:
        request = apb.GetQueueStatsRequest(name=name)
        return self._call(
            self._admin.GetQueueStats, request, apb.GetQueueStatsResponse, f"queue '{name}'"
        )

    def pause_queue(self, name: str) -> apb.PauseQueueResponse:
        request = apb.PauseQueueRequest(name=name)
        return self._call(
            self._admin.PauseQueue, request, apb.PauseQueueResponse, f"queue '{name}'"
        )

    def resume_queue(self, name: str) -> apb.ResumeQueueResponse:
        request = apb.ResumeQueueRequest(name=name)
        return self._call(
            self._admin.ResumeQueue, request, apb.ResumeQueueResponse, f"queue '{name}'"
        )

    def set_queue_limits(
        self,
        name: str,
        max_running: int | None,
        key_max_running: int | None,
        rate: tuple[int, timedelta] | None,
        key_rate: tuple[int, timedelta] | None,
    ) -> apb.SetQueueLimitsResponse:
        """Unset (None) leaves a setting; 0 (a limit of 0 for a rate) removes it."""
        request = apb.SetQueueLimitsRequest(name=name)
        if max_running is not None:
            request.max_running = max_running
        if key_max_running is not None:
            request.key_max_running = key_max_running
        if rate is not None:
            request.rate.limit = rate[0]
            request.rate.period.CopyFrom(_duration(rate[1]))
        if key_rate is not None:
            request.key_rate.limit = key_rate[0]
            request.key_rate.period.CopyFrom(_duration(key_rate[1]))
        return self._call(
            self._admin.SetQueueLimits, request, apb.SetQueueLimitsResponse, f"queue '{name}'"
        )

    def list_workers(self, status: str | None) -> apb.ListWorkersResponse:
        request = apb.ListWorkersRequest(status=f"WORKER_STATUS_{status or 'UNSPECIFIED'}")
        return self._call(self._admin.ListWorkers, request, apb.ListWorkersResponse)

    def drain_worker(self, worker_id: str) -> apb.DrainWorkerResponse:
        request = apb.DrainWorkerRequest(worker_id=worker_id)
        return self._call(
            self._admin.DrainWorker, request, apb.DrainWorkerResponse, f"worker {worker_id}"
        )

    def shutdown_worker(self, worker_id: str) -> apb.ShutdownWorkerResponse:
        request = apb.ShutdownWorkerRequest(worker_id=worker_id)
        return self._call(
            self._admin.ShutdownWorker, request, apb.ShutdownWorkerResponse, f"worker {worker_id}"
        )

    def system_status(self) -> apb.GetSystemStatusResponse:
        return self._call(
            self._admin.GetSystemStatus, apb.GetSystemStatusRequest(), apb.GetSystemStatusResponse
        )

    def list_audit_events(
        self, limit: int, action: str, actor: str, page_token: str
    ) -> apb.ListAuditEventsResponse:
        request = apb.ListAuditEventsRequest(
            limit=limit, action=action, actor=actor, page_token=page_token
        )
        return self._call(self._admin.ListAuditEvents, request, apb.ListAuditEventsResponse)

    # AdminService: schedules

    def create_schedule(self, request: spb.CreateScheduleRequest) -> spb.CreateScheduleResponse:
        return self._call(
            self._admin.CreateSchedule,
            request,
            spb.CreateScheduleResponse,
            f"schedule '{request.name}'",
        )

    def list_schedules(self) -> spb.ListSchedulesResponse:
        return self._call(
            self._admin.ListSchedules, spb.ListSchedulesRequest(), spb.ListSchedulesResponse
        )

    def get_schedule(self, name: str) -> spb.GetScheduleResponse:
        request = spb.GetScheduleRequest(name=name)
        return self._call(
            self._admin.GetSchedule, request, spb.GetScheduleResponse, f"schedule '{name}'"
        )

    def delete_schedule(self, name: str) -> spb.DeleteScheduleResponse:
        request = spb.DeleteScheduleRequest(name=name)
        return self._call(
            self._admin.DeleteSchedule, request, spb.DeleteScheduleResponse, f"schedule '{name}'"
        )

    def pause_schedule(self, name: str) -> spb.PauseScheduleResponse:
        request = spb.PauseScheduleRequest(name=name)
        return self._call(
            self._admin.PauseSchedule, request, spb.PauseScheduleResponse, f"schedule '{name}'"
        )

    def resume_schedule(self, name: str) -> spb.ResumeScheduleResponse:
        request = spb.ResumeScheduleRequest(name=name)
        return self._call(
            self._admin.ResumeSchedule, request, spb.ResumeScheduleResponse, f"schedule '{name}'"
        )
