"""JOB_OUTCOME_REFUSED over real gRPC: the job is dead-lettered at once (REFUSED), without
retries, from ASSIGNED or RUNNING, fenced like every report, and the worker's slot is freed."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.processes import free_port
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, running_server

from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import worker_service_pb2 as wpb

REFUSAL = "command jobs are not allowed on this worker: worker.allowed_commands is empty"


async def _submit(client: Client, max_retries: int = 3) -> str:
    payload = json.dumps({"command": ["id"]}).encode()
    reply = await client.jobs.SubmitJob(
        jpb.SubmitJobRequest(queue_name="default", payload=payload, max_retries=max_retries),
        timeout=5,
    )
    return reply.job_id


async def _job(client: Client, job_id: str) -> cpb.Job:
    reply = await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=5)
    return reply.job


async def _events(client: Client, job_id: str) -> list[tuple[int, int, str, str, int]]:
    reply = await client.jobs.GetJobLogs(jpb.GetJobLogsRequest(job_id=job_id), timeout=5)
    return [
        (e.from_status, e.to_status, e.reason, e.detail, e.worker_id != "") for e in reply.events
    ]


def _dead_lettered(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "jq_jobs_dead_lettered_total"
    }


async def test_a_refused_assignment_is_dead_lettered_at_once(db_dsn: str) -> None:
    async with running_server(db_dsn, {"metrics.port": free_port()}) as (app, client):
        job_id = await _submit(client, max_retries=3)
        worker = await ProtocolWorker(client, concurrency=1).start()
        [assignment] = await worker.take(1)
        await worker.refuse(assignment, REFUSAL)  # no acknowledgement: it never started
        job = await _job(client, job_id)
        assert (job.status, job.retry_count, job.error_message) == (
            cpb.JOB_STATUS_DEAD_LETTERED,
            0,
            REFUSAL,
        )
        assert not job.HasField("started_at")
        assert job.HasField("completed_at")
        assert await _events(client, job_id) == [
            (cpb.JOB_STATUS_UNSPECIFIED, cpb.JOB_STATUS_PENDING, "SUBMITTED", "", False),
            (cpb.JOB_STATUS_PENDING, cpb.JOB_STATUS_ASSIGNED, "ASSIGNED", "", True),
            (cpb.JOB_STATUS_ASSIGNED, cpb.JOB_STATUS_FAILED, "FAILED", REFUSAL, True),
            (cpb.JOB_STATUS_FAILED, cpb.JOB_STATUS_DEAD_LETTERED, "REFUSED", "", True),
        ]
        # The slot is free again: the next job reaches the same one-slot worker.
        second = await _submit(client)
        [next_assignment] = await worker.take(1)
        assert next_assignment.job_id == second
        assert app.metrics_port is not None
        assert (await asyncio.to_thread(_dead_lettered, app.metrics_port)) == {"REFUSED": 1.0}
        await worker.close()


async def test_refusals_and_failures_in_one_batch_each_go_their_way(db_dsn: str) -> None:
    async with running_server(db_dsn) as (_, client):
        refused, failed = await _submit(client), await _submit(client)
        worker = await ProtocolWorker(client, concurrency=2).start()
        assignments = {a.job_id: a for a in await worker.take(2)}
        await worker.ack(list(assignments.values()))  # both started (RUNNING)
        reply = await client.workers.ReportResults(
            wpb.ReportResultsRequest(
                worker_id=worker.worker_id,
                incarnation=worker.incarnation,
                results=[
                    wpb.ReportResultRequest(
                        job_id=job_id,
                        attempt=assignments[job_id].attempt,
                        claim_id=assignments[job_id].claim_id,
                        outcome=outcome,
                        error_message=message,
                    )
                    for job_id, outcome, message in (
                        (refused, wpb.JOB_OUTCOME_REFUSED, "handler not allowed: os:system"),
                        (failed, wpb.JOB_OUTCOME_FAILED, "exit status 1"),
                    )
                ],
            ),
            timeout=5,
        )
        assert [o.accepted for o in reply.outcomes] == [True, True]
        dead, retried = await _job(client, refused), await _job(client, failed)
        assert (dead.status, dead.retry_count) == (cpb.JOB_STATUS_DEAD_LETTERED, 0)
        assert (retried.status, retried.retry_count) == (cpb.JOB_STATUS_PENDING, 1)
        assert [e[2] for e in await _events(client, refused)][-3:] == [
            "STARTED",
            "FAILED",
            "REFUSED",
        ]
        await worker.close()


async def test_a_stale_refusal_is_rejected_and_a_duplicate_accepted(db_dsn: str) -> None:
    async with running_server(db_dsn) as (_, client):
        job_id = await _submit(client)
        holder = await ProtocolWorker(client).start()
        [assignment] = await holder.take(1)
        stranger = await ProtocolWorker(client).start()
        with pytest.raises(grpc.aio.AioRpcError) as stale:
            await stranger.refuse(assignment, REFUSAL)
        assert stale.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert (await _job(client, job_id)).status == cpb.JOB_STATUS_ASSIGNED
        await holder.refuse(assignment, REFUSAL)
        events = await _events(client, job_id)
        await holder.refuse(assignment, REFUSAL)  # the same report again: idempotent
        assert await _events(client, job_id) == events
        assert (await _job(client, job_id)).status == cpb.JOB_STATUS_DEAD_LETTERED
        await holder.close()
        await stranger.close()
