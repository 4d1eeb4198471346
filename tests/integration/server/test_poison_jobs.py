"""Poison jobs through the running server: whatever kind of interruption keeps ending a job's
deliveries — a restarted worker process, a lost worker, an unacknowledged assignment — the one
more than its queue's max_interruptions dead-letters it (POISON), with its retries untouched,
and the dead letter is counted under its reason."""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from support.payloads import job_payload
from support.processes import free_port
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, running_server

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb

QUEUE = "fragile"


async def _poison_queue(client: Client, max_interruptions: int) -> str:
    request = apb.CreateQueueRequest(name=QUEUE, max_retries=5, max_interruptions=max_interruptions)
    await client.admin.CreateQueue(request, timeout=5)
    reply = await client.jobs.SubmitJob(
        jpb.SubmitJobRequest(queue_name=QUEUE, payload=job_payload(b"x")), timeout=5
    )
    return reply.job_id


async def _job(client: Client, job_id: str) -> cpb.Job:
    return (await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=5)).job


async def _events(client: Client, job_id: str) -> list[cpb.JobEvent]:
    reply = await client.jobs.GetJobLogs(jpb.GetJobLogsRequest(job_id=job_id), timeout=5)
    return list(reply.events)


async def _dead_lettered(client: Client, job_id: str, within: float = 15.0) -> cpb.Job:
    async with asyncio.timeout(within):
        while (job := await _job(client, job_id)).status != cpb.JOB_STATUS_DEAD_LETTERED:
            await asyncio.sleep(0.05)
    return job


def _dead_letter_counts(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "jq_jobs_dead_lettered_total"
    }


async def test_a_job_whose_worker_process_keeps_restarting_is_poison(db_dsn: str) -> None:
    async with running_server(db_dsn, {"metrics.port": free_port()}) as (app, client):
        job_id = await _poison_queue(client, max_interruptions=2)
        worker_id = ""
        for delivery in (1, 2, 3):
            # A new process under the same id each time (a supervisor restarting it): its
            # registration releases what the previous process held.
            process = ProtocolWorker(client, queues=(QUEUE,), worker_id=worker_id)
            await process.start()
            worker_id = process.worker_id
            [assignment] = await process.take(1)
            assert assignment.attempt == delivery
            await process.ack([assignment])
            await process.close()  # "killed" by the job
        restarted = ProtocolWorker(client, queues=(QUEUE,), worker_id=worker_id)
        await restarted.start()
        job = await _dead_lettered(client, job_id)
        assert (job.retry_count, job.interruptions, job.attempt) == (0, 3, 3)
        events = await _events(client, job_id)
        assert [(e.from_status, e.to_status, e.reason) for e in events[-2:]] == [
            (cpb.JOB_STATUS_RUNNING, cpb.JOB_STATUS_FAILED, "WORKER_RESTARTED"),
            (cpb.JOB_STATUS_FAILED, cpb.JOB_STATUS_DEAD_LETTERED, "POISON"),
        ]
        assert "interrupted 3 times" in events[-1].detail
        assert await restarted.nothing_more(0.3)  # not handed out again
        assert app.metrics_port is not None
        counts = await asyncio.to_thread(_dead_letter_counts, app.metrics_port)
        assert counts == {"POISON": 1.0}
        await restarted.close()


async def test_a_job_never_acknowledged_is_poison_after_its_assignment_timeouts(
    db_dsn: str,
) -> None:
    """A worker that dies before it can acknowledge a job looks like this to the server."""
    async with running_server(db_dsn, {"scheduler.assignment_timeout_s": 1}) as (_, client):
        job_id = await _poison_queue(client, max_interruptions=1)
        worker = await ProtocolWorker(client, queues=(QUEUE,), concurrency=1).start()
        first, second = await worker.take(2, within=15)  # given back once, then again
        assert (first.attempt, second.attempt) == (1, 2)
        job = await _dead_lettered(client, job_id)
        assert (job.retry_count, job.interruptions) == (0, 2)
        events = await _events(client, job_id)
        last = events[-1]
        assert (last.from_status, last.to_status, last.reason) == (
            cpb.JOB_STATUS_ASSIGNED,
            cpb.JOB_STATUS_DEAD_LETTERED,
            "POISON",
        )
        assert "(ASSIGNMENT_TIMEOUT); interruption 2, more than the 1 allowed" in last.detail
        assert [e.reason for e in events].count("ASSIGNMENT_TIMEOUT") == 1
        assert await worker.nothing_more(1.5)
        await worker.close()


async def test_a_job_whose_workers_keep_being_lost_is_poison(db_dsn: str) -> None:
    settings = {
        "scheduler.worker_heartbeat_timeout_s": 1,
        "scheduler.heartbeat_check_interval_s": 0.2,
    }
    async with running_server(db_dsn, settings) as (_, client):
        job_id = await _poison_queue(client, max_interruptions=0)
        victim = await ProtocolWorker(client, queues=(QUEUE,), concurrency=1).start()
        [assignment] = await victim.take(1)
        await victim.ack([assignment])
        await victim.close()  # no more heartbeats
        job = await _dead_lettered(client, job_id)
        assert (job.retry_count, job.interruptions) == (0, 1)
        reasons = [e.reason for e in await _events(client, job_id)]
        assert reasons[-2:] == ["WORKER_LOST", "POISON"]
