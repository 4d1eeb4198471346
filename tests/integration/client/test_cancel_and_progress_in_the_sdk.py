"""The SDK's view of cancels and progress: `cancel()` of a RUNNING job answers with the job
still RUNNING and the request recorded; `JobInfo` carries the progress; the cancelled job's
`result()` raises JobCancelled naming the canceller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client as Stubs
from support.server_harness import running_server

from jobq.client import AsyncClient, JobCancelled, JobStatus
from jobq.rpc._gen import worker_service_pb2 as wpb


@pytest.fixture
async def server(db_dsn: str) -> AsyncIterator[tuple[str, Stubs]]:
    async with running_server(db_dsn) as (app, stubs):
        yield f"127.0.0.1:{app.grpc_port}", stubs


async def test_cancel_a_running_job_and_read_its_progress(server: tuple[str, Stubs]) -> None:
    address, stubs = server
    worker = await ProtocolWorker(stubs).start()
    async with AsyncClient(address, timeout_s=10) as client:
        job = await client.submit("jobq.demo_tasks:add", 2, 3, queue="default")
        [assignment] = await worker.take(1)
        await worker.ack([assignment])
        await stubs.workers.ReportProgress(
            wpb.ReportProgressRequest(
                worker_id=worker.worker_id,
                incarnation=worker.incarnation,
                items=[
                    wpb.JobProgress(
                        job_id=assignment.job_id,
                        attempt=assignment.attempt,
                        claim_id=assignment.claim_id,
                        fraction=0.42,
                        message="resized 42 of 100",
                    )
                ],
            ),
            timeout=5,
        )
        info = await job.info()
        assert (info.progress, info.progress_message) == (0.42, "resized 42 of 100")
        assert info.progress_updated_at is not None
        assert info.cancel_requested_at is None
        waiting = asyncio.create_task(job.result(timeout=30))
        requested = await job.cancel()
        assert requested.status is JobStatus.RUNNING
        assert requested.cancel_requested_at is not None
        assert requested.cancelled_by == "anonymous"
        await worker.report(assignment, wpb.JOB_OUTCOME_CANCELLED, error="cancelled: stopped")
        with pytest.raises(JobCancelled) as cancelled:
            await waiting
        ended = cancelled.value.job
        assert (ended.status, ended.cancelled_by, ended.progress) == (
            JobStatus.DEAD_LETTERED,
            "anonymous",
            0.42,  # an ended job keeps its last progress
        )
    await worker.close()
