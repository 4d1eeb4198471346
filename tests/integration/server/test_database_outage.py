"""PostgreSQL stops under a running server: RPCs answer UNAVAILABLE within their deadline,
/readyz says 503, the process stays up, and everything resumes when PostgreSQL returns."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from support.payloads import job_payload
from support.postgres import stoppable_postgres
from support.processes import free_port
from support.protocol_worker import ProtocolWorker
from support.server_harness import running_server

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.storage.embedded import EmbeddedPostgres


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, which it stops."""
    with stoppable_postgres("jobq-outage-pg-") as server:
        yield server


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def _readyz(port: int) -> int:
    return await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz")


async def test_rpcs_fail_fast_while_postgres_is_down_and_recover_after(
    own_postgres: EmbeddedPostgres,
) -> None:
    overrides = {"health.port": free_port(), "db.command_timeout_s": 3}
    async with running_server(own_postgres.dsn(), overrides) as (app, client):
        assert app.health_port is not None
        assert await _readyz(app.health_port) == 200
        worker = await ProtocolWorker(client).start()
        before = await client.jobs.SubmitJob(
            jpb.SubmitJobRequest(queue_name="default", payload=job_payload(b"1")), timeout=5
        )
        [assignment] = await worker.take(1)
        assert assignment.job_id == before.job_id

        await asyncio.to_thread(own_postgres.stop, "fast")
        for call in (
            client.jobs.SubmitJob(
                jpb.SubmitJobRequest(queue_name="default", payload=job_payload(b"2")), timeout=2
            ),
            client.admin.ListQueues(apb.ListQueuesRequest(), timeout=2),
            client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=before.job_id), timeout=2),
        ):
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await call
            assert failure.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "Traceback" not in (failure.value.details() or "")
            assert time.monotonic() - started < 2.0
        assert await _readyz(app.health_port) == 503

        await asyncio.to_thread(own_postgres.start)
        async with asyncio.timeout(20):
            while await _readyz(app.health_port) != 200:
                await asyncio.sleep(0.1)
        after = await client.jobs.SubmitJob(
            jpb.SubmitJobRequest(queue_name="default", payload=job_payload(b"3")), timeout=5
        )
        # The worker's report of the job it held before the outage still lands.
        await worker.run([assignment])
        [next_one] = await worker.take(1, within=15)
        assert next_one.job_id == after.job_id
        status = await client.jobs.GetJobStatus(
            jpb.GetJobStatusRequest(job_id=before.job_id), timeout=5
        )
        assert status.job.status == cpb.JOB_STATUS_DONE
        await worker.close()
