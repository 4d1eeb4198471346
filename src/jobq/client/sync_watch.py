"""The blocking client's wait: one WatchJobs call for up to 1000 jobs, opened again after
UNAVAILABLE (a server restart) for the jobs not yet received."""

from __future__ import annotations

import time
from collections.abc import Sequence

import grpc

from jobq.client.errors import CallFailed
from jobq.client.job_info import ENDED, JobInfo
from jobq.client.retry import RetryPolicy
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import job_service_pb2_grpc


def watch_ended(
    stub: job_service_pb2_grpc.JobServiceStub,
    metadata: Sequence[tuple[str, str]],
    retry: RetryPolicy,
    job_ids: Sequence[str],
    timeout: float | None,
) -> dict[str, JobInfo]:
    """One WatchJobs call for `job_ids` (at most 1000), opened again after UNAVAILABLE (a
    server restart) for the jobs not yet received, until `timeout`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ended: dict[str, JobInfo] = {}
    failures = 0
    while len(ended) < len(job_ids):
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError(f"jobs not ended within {timeout:g}s")
        waiting = [job_id for job_id in job_ids if job_id not in ended]
        call = stub.WatchJobs(
            jpb.WatchJobsRequest(job_ids=waiting), timeout=remaining, metadata=metadata
        )
        try:
            for reply in call:
                job = JobInfo.from_proto(reply.job)
                if job.status in ENDED:
                    ended[job.job_id] = job
                    failures = 0
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code is grpc.StatusCode.DEADLINE_EXCEEDED and remaining is not None:
                raise TimeoutError(f"jobs not ended within {timeout:g}s") from None
            if code is grpc.StatusCode.UNAVAILABLE:
                failures += 1
                time.sleep(retry.backoff(min(failures, 10)))
                continue
            raise call_failed(exc, "WatchJobs") from None
    return ended


def call_failed(exc: grpc.RpcError, method: str) -> CallFailed:
    """A gRPC error as CallFailed: its code's name and the server's message."""
    if isinstance(exc, grpc.Call):
        return CallFailed(exc.code().name, exc.details() or "", method)
    return CallFailed("UNKNOWN", str(exc), method)
