"""Two jq-server processes on one database, each with workers attached: every job runs once."""

from __future__ import annotations

import asyncio

import asyncpg
from support.payloads import job_payload
from support.processes import ServerFactory
from support.protocol_worker import ProtocolWorker
from support.server_harness import client_for

from jobq.rpc._gen import job_service_pb2 as jpb

JOBS = 2000


async def _submit_half(client_port: int, count: int, tag: str) -> None:
    client = client_for(client_port)
    try:
        # Half of it in batches, half one by one with many in flight (group commit).
        batched = count // 2
        for start in range(0, batched, 100):
            request = jpb.SubmitJobsRequest(
                jobs=[
                    jpb.SubmitJobRequest(
                        queue_name="default", payload=job_payload(f"{tag}-{i}".encode())
                    )
                    for i in range(start, min(start + 100, batched))
                ]
            )
            await client.jobs.SubmitJobs(request, timeout=30)
        singles = [
            client.jobs.SubmitJob(
                jpb.SubmitJobRequest(
                    queue_name="default", payload=job_payload(f"{tag}-s{i}".encode())
                ),
                timeout=30,
            )
            for i in range(count - batched)
        ]
        for chunk in range(0, len(singles), 50):
            await asyncio.gather(*singles[chunk : chunk + 50])
    finally:
        await client.channel.close()


async def _count(dsn: str, where: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(f"SELECT count(*) FROM jobs WHERE {where}")
        return count
    finally:
        await conn.close()


async def test_two_servers_run_every_job_exactly_once(
    start_server: ServerFactory, db_dsn: str
) -> None:
    env = {"JQ_DB_DSN": db_dsn, "JQ_LOGGING_LEVEL": "warning"}
    servers = [start_server(env, wait=False) for _ in range(2)]
    for server in servers:
        server.wait_serving()
    clients = [client_for(server.grpc_port) for server in servers]
    executions: dict[str, int] = {}
    workers = [
        await ProtocolWorker(client, concurrency=8).start() for client in clients for _ in range(2)
    ]
    serving = [asyncio.create_task(w.serve(executions)) for w in workers]
    try:
        await asyncio.gather(
            _submit_half(servers[0].grpc_port, JOBS // 2, "a"),
            _submit_half(servers[1].grpc_port, JOBS - JOBS // 2, "b"),
        )
        async with asyncio.timeout(120):
            while await _count(db_dsn, "status = 'DONE'") < JOBS:
                await asyncio.sleep(0.2)
    finally:
        for task in serving:
            task.cancel()
        await asyncio.gather(*serving, return_exceptions=True)
        for worker in workers:
            await worker.close()
        for client in clients:
            await client.channel.close()
    assert len(executions) == JOBS
    assert set(executions.values()) == {1}, "some job ran more than once"
    assert await _count(db_dsn, "status NOT IN ('DONE')") == 0
    assert await _count(db_dsn, "attempt <> 1") == 0
    for server in servers:
        assert server.terminate() == 0
