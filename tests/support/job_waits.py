"""Waiting on job states through the API, with deadlines instead of fixed sleeps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb
from support.server_harness import Client


async def submit(client: Client, payload: object, **fields: object) -> str:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    fields.setdefault("queue_name", "default")
    reply = await client.jobs.SubmitJob(
        jpb.SubmitJobRequest(payload=body, **fields),  # type: ignore[arg-type]
        timeout=10,
    )
    return reply.job_id


async def job(client: Client, job_id: str) -> cpb.Job:
    reply = await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=10)
    return reply.job


async def wait_status(
    client: Client, job_ids: Sequence[str], statuses: Sequence[int], within: float = 30.0
) -> list[cpb.Job]:
    """Wait until every job is in one of `statuses`; returns them."""
    async with asyncio.timeout(within):
        while True:
            jobs = [await job(client, job_id) for job_id in job_ids]
            if all(j.status in statuses for j in jobs):
                return jobs
            await asyncio.sleep(0.1)


async def logs(client: Client, job_id: str) -> list[cpb.JobEvent]:
    reply = await client.jobs.GetJobLogs(jpb.GetJobLogsRequest(job_id=job_id), timeout=10)
    return list(reply.events)
