"""The measurements: submit throughput, drain throughput, pickup latency."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time

import asyncpg
import grpc

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import admin_service_pb2_grpc, job_service_pb2_grpc
from jobq.rpc._gen import job_service_pb2 as jpb

NOOP = json.dumps({"handler": "bench.handlers:noop_async"}).encode()
TRUE = json.dumps({"command": ["true"]}).encode()
STAMP = json.dumps({"handler": "bench.handlers:started_at_async"}).encode()


def stub(port: int) -> tuple[grpc.aio.Channel, job_service_pb2_grpc.JobServiceStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return channel, job_service_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]


async def create_queue(port: int, name: str) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    admin = admin_service_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
    await admin.CreateQueue(apb.CreateQueueRequest(name=name), timeout=10)
    await channel.close()


async def submit_single(port: int, count: int, in_flight: int, queue: str) -> float:
    """Jobs/s for `count` SubmitJob calls from one client with `in_flight` outstanding (into a
    queue no worker serves, so the drain that follows is not disturbed)."""
    await create_queue(port, queue)
    channel, jobs = stub(port)
    limit = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with limit:
            await jobs.SubmitJob(jpb.SubmitJobRequest(queue_name=queue, payload=NOOP), timeout=30)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - started
    await channel.close()
    return count / elapsed


async def submit_batches(
    port: int, count: int, payload: bytes, batch: int = 1000, in_flight: int = 1
) -> float:
    """Jobs/s for `count` jobs sent with SubmitJobs in batches of `batch`, `in_flight` calls at
    a time from one client (each builds its request when its turn comes, as a producer would)."""
    channel, jobs = stub(port)
    turns = asyncio.Semaphore(in_flight)

    async def one(size: int) -> None:
        async with turns:
            request = jpb.SubmitJobsRequest(
                jobs=[
                    jpb.SubmitJobRequest(queue_name="default", payload=payload) for _ in range(size)
                ]
            )
            await jobs.SubmitJobs(request, timeout=60)

    started = time.perf_counter()
    await asyncio.gather(*(one(min(batch, count - o)) for o in range(0, count, batch)))
    elapsed = time.perf_counter() - started
    await channel.close()
    return count / elapsed


BUSY_PROBE = (
    "SELECT EXISTS (SELECT 1 FROM ready_jobs WHERE shard = 0 AND queue_name = $1)"
    " OR EXISTS (SELECT 1 FROM held_jobs WHERE shard = 0 AND queue_name = $1)"
)
"""Whether queue $1 has a job left to run or running: one probe of ready_jobs' claim index and
one of held_jobs' (V22), which hold only unfinished jobs, so polling it every 20 ms costs next
to nothing and does not slow down what it measures (jobs has no index by status any more: a
probe of jobs by status would read the whole table)."""


async def wait_all_done(dsn: str, expected: int, within: float = 600) -> float:
    """Seconds until `expected` jobs of the default queue are DONE (polled every 20 ms)."""
    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(within):
            while True:
                busy = await conn.fetchval(BUSY_PROBE, "default")
                if not busy:
                    done = await conn.fetchval(
                        "SELECT count(*) FROM jobs WHERE queue_name = 'default' AND status = 'DONE'"
                    )
                    if done >= expected:
                        return time.perf_counter() - started
                await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def settle(dsn: str) -> None:
    """Leave PostgreSQL idle after the drains: vacuum and analyse the tables they churned and
    write a checkpoint now, so that autovacuum and the checkpointer do not run during the
    pickup measurement (which is about an idle system) by chance in some runs and not others."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM (ANALYZE) jobs, job_events")
        # A role of an existing server (--postgres DSN) may not be allowed to.
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def pickup_latency(port: int, count: int, rate: float) -> dict[str, float]:
    """Submit `count` jobs at `rate`/s into an idle worker; each records when it started.
    Returns p50/p95/p99 of start - submit in milliseconds."""
    channel, jobs = stub(port)
    submitted: dict[str, float] = {}
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for _ in range(count):
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        next_at += interval
        sent = time.time()
        request = jpb.SubmitJobRequest(queue_name="default", payload=STAMP)
        reply = await jobs.SubmitJob(request, timeout=30)
        submitted[reply.job_id] = sent
    latencies = []
    async with asyncio.timeout(120):
        for job_id, sent in submitted.items():
            while True:
                job = (
                    await jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=30)
                ).job
                if job.result:
                    latencies.append((float(job.result) - sent) * 1000)
                    break
                await asyncio.sleep(0.02)
    await channel.close()
    return latency_quantiles(latencies)


def latency_quantiles(latencies: list[float]) -> dict[str, float]:
    """p50/p95/p99 of pickup latencies in ms, as both jobq's and the peer's pickup report them."""
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "pickup_p50_ms": round(quantiles[49], 2),
        "pickup_p95_ms": round(quantiles[94], 2),
        "pickup_p99_ms": round(quantiles[98], 2),
    }
