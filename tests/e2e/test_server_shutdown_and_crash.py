"""jq-server's own lifecycle as a real process: SIGTERM drains and exits 0; SIGKILL loses
nothing, and a restarted server picks up where the old one stopped."""

from __future__ import annotations

import asyncio
import signal

import asyncpg
import grpc
import pytest
from support.payloads import job_payload
from support.processes import ServerFactory
from support.protocol_worker import ProtocolWorker
from support.server_harness import client_for

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import job_service_pb2 as jpb


async def _statuses(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT status::text, count(*) AS n FROM jobs GROUP BY status")
        return {row["status"]: row["n"] for row in rows}
    finally:
        await conn.close()


async def test_sigterm_closes_streams_and_exits_zero(
    start_server: ServerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn, "JQ_GRPC_GRACEFUL_SHUTDOWN_S": "5"})
    client = client_for(server.grpc_port)
    worker = await ProtocolWorker(client).start()
    await client.jobs.SubmitJob(
        jpb.SubmitJobRequest(queue_name="default", payload=job_payload(b"x")), timeout=5
    )
    [assignment] = await worker.take(1)
    server.process.send_signal(signal.SIGTERM)
    assert worker._stream_task is not None
    async with asyncio.timeout(15):
        await worker._stream_task  # the server ended the stream
        while server.process.poll() is None:
            await asyncio.sleep(0.05)
    assert server.process.returncode == 0
    log = server.log()
    assert '"action": "server.stopped"' in log
    assert "Traceback" not in log
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.admin.ListQueues(apb.ListQueuesRequest(), timeout=2)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    # The job the worker held is still its own: nothing was lost or changed by the shutdown.
    assert await _statuses(db_dsn) == {"ASSIGNED": 1}
    assert assignment.attempt == 1
    await worker.close()
    await client.channel.close()


async def test_sigkill_while_jobs_are_assigned_then_restart(
    start_server: ServerFactory, db_dsn: str
) -> None:
    env = {"JQ_DB_DSN": db_dsn}
    first = start_server(env)
    client = client_for(first.grpc_port)
    ids = []
    for i in range(10):
        reply = await client.jobs.SubmitJob(
            jpb.SubmitJobRequest(queue_name="default", payload=job_payload(str(i).encode())),
            timeout=5,
        )
        ids.append(reply.job_id)
    worker = await ProtocolWorker(client, concurrency=4).start()
    held = await worker.take(4)
    await worker.ack(held[:2])  # two RUNNING, two ASSIGNED when the server dies
    first.process.kill()
    first.process.wait(timeout=10)
    await worker.close()
    await client.channel.close()
    assert await _statuses(db_dsn) == {"PENDING": 6, "ASSIGNED": 2, "RUNNING": 2}

    second = start_server(env, port=first.grpc_port)
    client = client_for(second.grpc_port)
    # The worker (the same process: it presents its incarnation) comes back with its id,
    # reopens its stream and finishes what it held; the server counts those as taken slots, so
    # it sends only the rest.
    back = ProtocolWorker(
        client, concurrency=4, worker_id=worker.worker_id, incarnation=worker.incarnation
    )
    await back.start()
    assert await back.nothing_more(0.5)
    await back.ack(held[2:])
    await back.run(held)
    executions: dict[str, int] = {a.job_id: 1 for a in held}
    serving = asyncio.create_task(back.serve(executions))
    try:
        async with asyncio.timeout(30):
            while (await _statuses(db_dsn)).get("DONE", 0) < 10:
                await asyncio.sleep(0.1)
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    assert sorted(executions) == sorted(ids)
    assert set(executions.values()) == {1}
    assert await _statuses(db_dsn) == {"DONE": 10}
    await back.close()
    await client.channel.close()
    assert second.terminate() == 0
