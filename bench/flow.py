"""Drains of limited queues (issue 18): what the limited claim's checks cost beside the plain
drain, with limits set so that they do not bind (the checks run, nothing waits for them).

- `drain_key_limited_jobs_per_s`: every job has one of 100 concurrency keys, at most 4 of a key
  held at once (400 allowed, more than the worker's slots);
- `drain_rate_limited_jobs_per_s`: at most 1,000,000 starts per second, queue-wide (every claim
  also records its starts in the sliding window and prunes it).

Each drains as many no-op jobs as the plain drain, by a worker serving only that queue.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import grpc
from google.protobuf.duration_pb2 import Duration

from bench import processes as p
from bench import scenarios as s
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import admin_service_pb2_grpc, common_pb2
from jobq.rpc._gen import job_service_pb2 as jpb

KEYS = 100
LIMITS = {
    "bench-keys": apb.SetQueueLimitsRequest(name="bench-keys", key_max_running=4),
    "bench-rate": apb.SetQueueLimitsRequest(
        name="bench-rate",
        rate=common_pb2.RateLimit(limit=1_000_000, period=Duration(seconds=1)),
    ),
}
FIGURES = {
    "bench-keys": "drain_key_limited_jobs_per_s",
    "bench-rate": "drain_rate_limited_jobs_per_s",
}


async def measure_limited_drains(
    grpc_port: int,
    dsn: str,
    jobs: int,
    worker_args: list[str],
    worker_env: dict[str, str],
    workdir: Path,
) -> dict[str, float]:
    """Jobs/s of each limited drain (see the module's docstring)."""
    results: dict[str, float] = {}
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
    admin = admin_service_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
    try:
        for queue, limits in LIMITS.items():
            await admin.CreateQueue(apb.CreateQueueRequest(name=queue), timeout=10)
            await admin.SetQueueLimits(limits, timeout=10)
            await _submit(grpc_port, queue, jobs)
            started = time.perf_counter()
            worker = p.start_program(
                "jq-worker", [*worker_args, "--queues", queue], worker_env, workdir
            )
            try:
                await _wait_done(dsn, queue, jobs)
            finally:
                worker.stop()
            results[FIGURES[queue]] = round(jobs / (time.perf_counter() - started), 1)
    finally:
        await channel.close()
    return results


async def _submit(port: int, queue: str, count: int, batch: int = 1000) -> None:
    channel, stub = s.stub(port)
    try:
        for offset in range(0, count, batch):
            request = jpb.SubmitJobsRequest(
                jobs=[
                    jpb.SubmitJobRequest(
                        queue_name=queue, payload=s.NOOP, concurrency_key=f"k{i % KEYS}"
                    )
                    for i in range(offset, min(offset + batch, count))
                ]
            )
            await stub.SubmitJobs(request, timeout=60)
    finally:
        await channel.close()


async def _wait_done(dsn: str, queue: str, count: int, within: float = 600) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with asyncio.timeout(within):
            while True:
                # Nothing that grows with the finished jobs, until the queue has none left.
                busy = await conn.fetchval(s.BUSY_PROBE, queue)
                if not busy:
                    done = await conn.fetchval(
                        "SELECT count(*) FROM jobs WHERE queue_name = $1 AND status = 'DONE'",
                        queue,
                    )
                    if done >= count:
                        return
                await asyncio.sleep(0.02)
    finally:
        await conn.close()
