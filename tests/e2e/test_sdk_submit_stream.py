"""The SDK's submit stream across a jq-server killed (SIGKILL) or stopped (SIGTERM) while
batches are in flight on it: no submit is lost, none creates a job twice, and the client
carries on over a new stream on the restarted server."""

from __future__ import annotations

import asyncio
import signal

import asyncpg
import pytest
from support.processes import ServerFactory

import jobq
from jobq.client.retry import RetryPolicy

CALLERS = 16
# Enough tries to outlast the restart (a few seconds), never so many that a real fault hides.
PATIENT = RetryPolicy(attempts=200, initial_backoff_s=0.02, max_backoff_s=0.1)


@pytest.mark.parametrize("ending", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
async def test_a_server_gone_mid_stream_loses_no_submit_and_doubles_none(
    start_server: ServerFactory, db_dsn: str, ending: signal.Signals
) -> None:
    env = {"JQ_DB_DSN": db_dsn}
    first = start_server(env)
    port = first.grpc_port
    returned: list[str] = []
    stop = asyncio.Event()

    async with jobq.AsyncClient(f"127.0.0.1:{port}", timeout_s=5, retry=PATIENT) as client:

        async def caller(n: int) -> None:
            while not stop.is_set():
                job = await client.submit("jobq.demo_tasks:add", n, 1)
                returned.append(job.id)

        async def until(count: int) -> None:
            async with asyncio.timeout(60):
                while len(returned) < count:
                    await asyncio.sleep(0.005)

        callers = [asyncio.create_task(caller(n)) for n in range(CALLERS)]
        try:
            await until(300)
            first.process.send_signal(ending)  # batches in flight: the callers do not pause
            await asyncio.to_thread(first.process.wait, 30)
            at_kill = len(returned)
            await asyncio.to_thread(start_server, env, port=port)
            await until(at_kill + 300)
        finally:
            stop.set()
            results = await asyncio.gather(*callers, return_exceptions=True)
        assert [r for r in results if r is not None] == []  # no caller saw an error
        assert client._stream.opened >= 2  # the stream was reopened on the new server

    conn = await asyncpg.connect(db_dsn)
    try:
        rows = await conn.fetch("SELECT job_id::text AS id FROM jobs")
    finally:
        await conn.close()
    assert len(returned) == len(set(returned))  # each submit its own job
    assert sorted(row["id"] for row in rows) == sorted(returned)  # none lost, none extra
