"""The lifecycle stream publishes every state change of every job, PENDING and ASSIGNED
included, after its commit and in commit order per job: for a mixed workload on a real server
(concurrent single and batch submits, two workers acknowledging, completing, failing, refusing
and giving back jobs, cancels and manual retries), what was published equals job_events."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Sequence
from uuid import UUID

import asyncpg
from support.payloads import job_payload
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, running_server

from jobq.domain.records import Transition
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import worker_service_pb2 as wpb

Step = tuple[str | None, str, str]  # from status, to status, reason

SETTINGS = {
    "scheduler.interval_ms": 50,
    "scheduler.retry_base_delay_s": 0.05,
    "scheduler.retry_max_delay_s": 0.1,
}
KINDS = ("ok", "ok", "ok", "fail", "refuse", "shutdown_once")


async def _work(worker: ProtocolWorker, kinds: dict[str, str], seen: set[str]) -> None:
    """Run what arrives as each job's kind says, a few at a time, until cancelled."""
    while True:
        batch = [await worker.received.get()]
        while not worker.received.empty() and len(batch) < worker.concurrency:
            batch.append(worker.received.get_nowait())
        for a in batch:
            # A job assigned by its own submit (scheduler.assign_at_submit) can arrive here
            # before the submit's reply has told _submit_all its id.
            while a.job_id not in kinds:
                await asyncio.sleep(0.001)
            kind = kinds[a.job_id]
            if kind == "refuse":
                await worker.refuse(a, "cannot run this")
                continue
            await worker.ack([a])
            if kind == "fail":
                await worker.report(a, wpb.JOB_OUTCOME_FAILED, error="boom")
            elif kind == "shutdown_once" and a.job_id not in seen:
                seen.add(a.job_id)
                await worker.report(a, wpb.JOB_OUTCOME_SHUTDOWN)
            else:
                await worker.report(a, result=b"done")


async def _submit_all(client: Client, kinds: dict[str, str], rng: random.Random) -> None:
    async def one() -> None:
        kind = rng.choice(KINDS)
        reply = await client.jobs.SubmitJob(
            jpb.SubmitJobRequest(queue_name="default", payload=job_payload(kind)), timeout=10
        )
        kinds[reply.job_id] = kind

    async def batch() -> None:
        chosen = [rng.choice(KINDS) for _ in range(8)]
        reply = await client.jobs.SubmitJobs(
            jpb.SubmitJobsRequest(
                jobs=[
                    jpb.SubmitJobRequest(queue_name="default", payload=job_payload(k))
                    for k in chosen
                ]
            ),
            timeout=10,
        )
        kinds.update(zip(reply.job_ids, chosen, strict=True))

    await asyncio.gather(*(one() for _ in range(40)), *(batch() for _ in range(4)))


async def _settled(client: Client, job_ids: Sequence[str]) -> bool:
    finished = (cpb.JOB_STATUS_DONE, cpb.JOB_STATUS_DEAD_LETTERED)
    for job_id in job_ids:
        reply = await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=5)
        if reply.job.status not in finished:
            return False
    return True


def _steps(transitions: Sequence[Transition]) -> dict[UUID, list[Step]]:
    by_job: dict[UUID, list[Step]] = defaultdict(list)
    for t in transitions:
        from_status = None if t.from_status is None else t.from_status.value
        by_job[t.job_id].append((from_status, t.to_status.value, t.reason.value))
    return by_job


async def _history(pool: asyncpg.Pool) -> dict[UUID, list[Step]]:
    rows = await pool.fetch(
        "SELECT job_id, from_status::text, to_status::text, reason FROM job_events ORDER BY id"
    )
    by_job: dict[UUID, list[Step]] = defaultdict(list)
    for row in rows:
        by_job[row["job_id"]].append((row["from_status"], row["to_status"], row["reason"]))
    return by_job


async def test_published_transitions_equal_job_events_for_a_mixed_workload(
    db_dsn: str, pool: asyncpg.Pool
) -> None:
    rng = random.Random(14)
    published: list[Transition] = []
    kinds: dict[str, str] = {}
    async with running_server(db_dsn, SETTINGS) as (app, client):
        app.lifecycle.subscribe(published.extend)
        await client.admin.CreateQueue(
            apb.CreateQueueRequest(name="parked", max_retries=1), timeout=5
        )
        workers = [await ProtocolWorker(client, concurrency=3).start() for _ in range(2)]
        seen: set[str] = set()
        tasks = [asyncio.create_task(_work(w, kinds, seen)) for w in workers]
        try:
            await _submit_all(client, kinds, rng)
            # Operator actions on jobs nobody serves: cancel, retry by hand, cancel again.
            parked = (
                await client.jobs.SubmitJobs(
                    jpb.SubmitJobsRequest(
                        jobs=[
                            jpb.SubmitJobRequest(queue_name="parked", payload=job_payload(i))
                            for i in range(5)
                        ]
                    ),
                    timeout=10,
                )
            ).job_ids
            for job_id in parked:
                await client.jobs.CancelJob(jpb.CancelJobRequest(job_id=job_id), timeout=5)
                await client.jobs.RetryJob(jpb.RetryJobRequest(job_id=job_id), timeout=5)
            await client.jobs.CancelJob(jpb.CancelJobRequest(job_id=parked[0]), timeout=5)
            async with asyncio.timeout(60):
                while not await _settled(client, list(kinds)):
                    await asyncio.sleep(0.1)
            # A worker leaves holding nothing, another comes and goes: no job changes.
            await workers[0].deregister()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in workers:
                await w.close()
    history = await _history(pool)
    assert len(history) == len(kinds) + 5
    reasons = {step[2] for steps in history.values() for step in steps}
    # The workload did reach every kind of change it means to check.
    assert {
        "SUBMITTED",
        "ASSIGNED",
        "STARTED",
        "COMPLETED",
        "FAILED",
        "RETRY",
        "RETRIES_EXHAUSTED",
        "REFUSED",
        "WORKER_SHUTDOWN",
        "CANCELLED",
        "MANUAL_RETRY",
    } <= reasons
    assert _steps(published) == history
