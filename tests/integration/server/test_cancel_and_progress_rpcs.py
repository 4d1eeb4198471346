"""CancelJob on RUNNING jobs and ReportProgress over real gRPC against a real database: the
request is answered at once with the job still RUNNING, reaches the worker on its batched stream
and in every heartbeat's answer, and ends the job CANCELLED when the worker reports it; progress
is stored for the current RUNNING attempt only, and bad reports change nothing."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
from support.auth import Tokens, bearer
from support.payloads import job_payload
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, running_server

from jobq.domain.scopes import Scope
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import worker_service_pb2 as wpb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture
async def client(db_dsn: str) -> AsyncIterator[Client]:
    async with running_server(db_dsn) as (_, connected):
        yield connected


async def _fails(call: Awaitable[Any], code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is code, caught.value.details()
    return caught.value.details() or ""


async def _submit(client: Client) -> str:
    reply = await client.jobs.SubmitJob(
        jpb.SubmitJobRequest(queue_name="default", payload=job_payload()), timeout=5
    )
    return reply.job_id


async def _job(client: Client, job_id: str) -> cpb.Job:
    return (await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=5)).job


async def _running(client: Client) -> tuple[ProtocolWorker, wpb.JobAssignment]:
    worker = await ProtocolWorker(client).start()
    await _submit(client)
    [assignment] = await worker.take(1)
    await worker.ack([assignment])
    return worker, assignment


async def test_a_running_job_is_cancelled_through_the_heartbeat_and_its_report(
    client: Client,
) -> None:
    worker, assignment = await _running(client)
    reply = await client.jobs.CancelJob(jpb.CancelJobRequest(job_id=assignment.job_id), timeout=5)
    assert reply.job.status == cpb.JOB_STATUS_RUNNING
    assert reply.job.HasField("cancel_requested_at")
    assert reply.job.cancelled_by == "anonymous"
    # The unbatched stream carries no cancels: the heartbeat's answer does, at every beat.
    for _ in range(2):
        beat = await worker.heartbeat([assignment])
        assert [(c.job_id, c.attempt) for c in beat.cancels] == [
            (assignment.job_id, assignment.attempt)
        ]
    await worker.report(assignment, wpb.JOB_OUTCOME_CANCELLED, error="cancelled: stopped")
    job = await _job(client, assignment.job_id)
    assert (job.status, job.error_message, job.cancelled_by) == (
        cpb.JOB_STATUS_DEAD_LETTERED,
        "cancelled by anonymous",
        "anonymous",
    )
    assert list((await worker.heartbeat([])).cancels) == []
    logs = await client.jobs.GetJobLogs(jpb.GetJobLogsRequest(job_id=assignment.job_id))
    assert [e.reason for e in logs.events][-2:] == ["CANCEL_REQUESTED", "CANCELLED"]
    await worker.close()


async def test_the_batched_stream_carries_the_cancel(client: Client) -> None:
    worker = ProtocolWorker(client)
    await worker.register()
    stream = client.workers.StreamJobBatches(
        wpb.StreamJobsRequest(worker_id=worker.worker_id, incarnation=worker.incarnation)
    )
    job_id = await _submit(client)
    first = await anext(aiter(stream))
    [assignment] = first.assignments
    assert list(first.cancels) == []
    await worker.ack([assignment])
    await client.jobs.CancelJob(jpb.CancelJobRequest(job_id=job_id), timeout=5)
    second = await anext(aiter(stream))  # the notification, heard by this replica
    assert list(second.assignments) == []
    assert [(c.job_id, c.attempt) for c in second.cancels] == [(job_id, assignment.attempt)]
    stream.cancel()


async def test_a_cancelled_report_nobody_asked_for_is_refused(client: Client) -> None:
    worker, assignment = await _running(client)
    await _fails(worker.report(assignment, wpb.JOB_OUTCOME_CANCELLED), PRECONDITION)
    assert (await _job(client, assignment.job_id)).status == cpb.JOB_STATUS_RUNNING
    await worker.close()


async def test_the_canceller_is_the_callers_token(db_dsn: str) -> None:
    tokens = Tokens.new()
    async with running_server(db_dsn, tokens.settings()) as (_, client):
        admin = bearer(tokens.by_scope[Scope.ADMIN])
        reply = await client.jobs.SubmitJob(
            jpb.SubmitJobRequest(queue_name="default", payload=job_payload()),
            metadata=bearer(tokens.by_scope[Scope.SUBMIT]),
            timeout=5,
        )
        cancelled = await client.jobs.CancelJob(
            jpb.CancelJobRequest(job_id=reply.job_id), metadata=admin, timeout=5
        )
        assert cancelled.job.cancelled_by == "token:admin"
        assert cancelled.job.error_message == "cancelled by token:admin"


def _progress(
    worker: ProtocolWorker, *items: wpb.JobProgress, incarnation: str | None = None
) -> Awaitable[wpb.ReportProgressResponse]:
    return worker.client.workers.ReportProgress(
        wpb.ReportProgressRequest(
            worker_id=worker.worker_id,
            incarnation=worker.incarnation if incarnation is None else incarnation,
            items=list(items),
        ),
        timeout=5,
    )


def _item(assignment: wpb.JobAssignment, fraction: float, message: str = "") -> wpb.JobProgress:
    return wpb.JobProgress(
        job_id=assignment.job_id,
        attempt=assignment.attempt,
        claim_id=assignment.claim_id,
        fraction=fraction,
        message=message,
    )


async def test_progress_of_the_running_attempt_is_stored(client: Client) -> None:
    worker, assignment = await _running(client)
    reply = await _progress(worker, _item(assignment, 0.1), _item(assignment, 0.42, "42 of 100"))
    assert [o.accepted for o in reply.outcomes] == [True, True]  # the later one is kept
    job = await _job(client, assignment.job_id)
    assert (job.progress, job.progress_message) == (0.42, "42 of 100")
    assert job.HasField("progress_updated_at")
    stale = wpb.JobProgress(
        job_id=assignment.job_id,
        attempt=assignment.attempt,
        claim_id="00000000-0000-4000-8000-000000000001",
        fraction=0.9,
    )
    [outcome] = (await _progress(worker, stale)).outcomes
    assert not outcome.accepted
    assert (await _job(client, assignment.job_id)).progress == 0.42
    await worker.close()


@pytest.mark.parametrize(
    ("fraction", "message", "expected"),
    [
        (1.5, "", "between 0 and 1"),
        (-0.1, "", "between 0 and 1"),
        (math.nan, "", "between 0 and 1"),
        (math.inf, "", "between 0 and 1"),
        (0.5, "x" * 201, "at most 200 characters"),
        (0.5, "nul\0", "NUL"),
    ],
)
async def test_bad_progress_is_refused_and_changes_nothing(
    client: Client, fraction: float, message: str, expected: str
) -> None:
    worker, assignment = await _running(client)
    await _progress(worker, _item(assignment, 0.25))
    details = await _fails(
        _progress(worker, _item(assignment, 0.3), _item(assignment, fraction, message)), INVALID
    )
    assert expected in details
    assert "progress 1" in details
    assert (await _job(client, assignment.job_id)).progress == 0.25  # nothing changed
    await worker.close()


async def test_progress_with_a_bad_id_or_too_many_items_is_refused(client: Client) -> None:
    worker, assignment = await _running(client)
    await _fails(_progress(worker, wpb.JobProgress(job_id="nope", fraction=0.5)), INVALID)
    many = [_item(assignment, 0.5)] * 10_001
    assert "at most 10000" in await _fails(_progress(worker, *many), INVALID)
    assert not (await _job(client, assignment.job_id)).HasField("progress")
    await worker.close()


async def test_progress_from_a_superseded_process_is_refused(client: Client) -> None:
    worker, assignment = await _running(client)
    await _fails(
        _progress(
            worker, _item(assignment, 0.5), incarnation="00000000-0000-4000-8000-0000000000aa"
        ),
        PRECONDITION,
    )
    assert not (await _job(client, assignment.job_id)).HasField("progress")
    await worker.close()


async def test_a_worker_that_deregisters_does_not_give_a_cancelled_job_back(
    client: Client,
) -> None:
    worker, assignment = await _running(client)
    await client.jobs.CancelJob(jpb.CancelJobRequest(job_id=assignment.job_id), timeout=5)
    await worker.deregister()  # its jobs would go back to PENDING: this one is cancelled
    job = await _job(client, assignment.job_id)
    assert (job.status, job.error_message) == (
        cpb.JOB_STATUS_DEAD_LETTERED,
        "cancelled by anonymous",
    )
    await worker.close()
