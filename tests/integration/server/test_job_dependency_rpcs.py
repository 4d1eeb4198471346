"""Job dependencies over gRPC (issue 18): depends_on refused at the door when malformed,
NOT_FOUND for a prerequisite that does not exist (nothing written), and WAITING visible in
GetJobStatus, ListJobs, queue stats and the system status; CancelJob of a WAITING job."""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from support.job_waits import wait_status
from support.payloads import job_payload
from support.server_harness import Client, running_server

from jobq.domain.ids import uuid7_text
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2
from jobq.rpc._gen import job_service_pb2 as jpb

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def _counts(dsn: str) -> tuple[int, int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return (
            await conn.fetchval("SELECT count(*) FROM jobs"),
            await conn.fetchval("SELECT count(*) FROM job_dependencies"),
            await conn.fetchval("SELECT count(*) FROM job_events"),
        )
    finally:
        await conn.close()


def _request(*depends_on: str, job_id: str = "") -> jpb.SubmitJobRequest:
    return jpb.SubmitJobRequest(
        queue_name="default", payload=job_payload(), depends_on=depends_on, job_id=job_id
    )


async def _submit(client: Client, *depends_on: str) -> str:
    reply = await client.jobs.SubmitJob(_request(*depends_on), timeout=5)
    return reply.job_id


async def _refused(client: Client, request: jpb.SubmitJobRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.jobs.SubmitJob(request, timeout=5)
    return caught.value


async def test_malformed_depends_on_is_refused_at_the_door(db_dsn: str) -> None:
    async with running_server(db_dsn) as (_, client):
        a = await _submit(client)
        before = await _counts(db_dsn)
        own = uuid7_text()
        cases = [
            (_request("not-a-uuid"), "malformed depends_on job id 'not-a-uuid': expected a UUID"),
            (_request(a, a), f"depends_on names job {a} twice"),
            (_request(own, job_id=own), f"depends_on names the job itself ({own})"),
            (
                _request(*(uuid7_text() for _ in range(101))),
                "depends_on names at most 100 jobs, got 101",
            ),
        ]
        for request, message in cases:
            error = await _refused(client, request)
            assert error.code() is INVALID
            assert error.details() == message
            batch = jpb.SubmitJobsRequest(jobs=[_request(), request])
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await client.jobs.SubmitJobs(batch, timeout=5)
            assert caught.value.code() is INVALID
            assert caught.value.details() == f"job 1: {message}"
        assert await _counts(db_dsn) == before


async def test_an_unknown_prerequisite_is_not_found_and_nothing_is_written(db_dsn: str) -> None:
    async with running_server(db_dsn) as (_, client):
        a = await _submit(client)
        before = await _counts(db_dsn)
        unknown = uuid7_text()
        error = await _refused(client, _request(a, unknown))
        assert error.code() is grpc.StatusCode.NOT_FOUND
        assert error.details() == f"depends_on: job {unknown} not found"
        batch = jpb.SubmitJobsRequest(jobs=[_request(), _request(a), _request(unknown)])
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.jobs.SubmitJobs(batch, timeout=5)
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
        assert caught.value.details() == f"job 2: depends_on: job {unknown} not found"
        assert await _counts(db_dsn) == before


async def test_a_waiting_job_is_shown_counted_listed_and_cancellable(db_dsn: str) -> None:
    # No worker: A stays PENDING, so B and C wait.
    async with running_server(db_dsn) as (_, client):
        a = await _submit(client)
        b = await _submit(client, a)
        c = await _submit(client, b)
        status = await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=b), timeout=5)
        assert status.job.status == common_pb2.JOB_STATUS_WAITING
        assert list(status.job.depends_on) == [a]
        listed = await client.jobs.ListJobs(
            jpb.ListJobsRequest(status=common_pb2.JOB_STATUS_WAITING), timeout=5
        )
        assert sorted(j.job_id for j in listed.jobs) == sorted([b, c])
        stats = await client.admin.GetQueueStats(
            apb.GetQueueStatsRequest(name="default"), timeout=5
        )
        assert (stats.stats.waiting, stats.stats.pending) == (2, 1)
        system = await client.admin.GetSystemStatus(apb.GetSystemStatusRequest(), timeout=5)
        assert system.jobs_by_status["WAITING"] == 2

        cancelled = await client.jobs.CancelJob(jpb.CancelJobRequest(job_id=b), timeout=5)
        assert cancelled.job.status == common_pb2.JOB_STATUS_DEAD_LETTERED
        # The resolver, woken by the cancel, dead-letters C.
        [dead] = await wait_status(client, [c], [common_pb2.JOB_STATUS_DEAD_LETTERED], within=10)
        assert dead.error_message == f"dependency {b} was dead-lettered"
        logs = await client.jobs.GetJobLogs(jpb.GetJobLogsRequest(job_id=c), timeout=5)
        assert [e.reason for e in logs.events] == ["SUBMITTED", "DEPENDENCY_FAILED"]
