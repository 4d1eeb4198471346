"""The worker's channel factory against a real grpc.aio server: the bearer token arrives with
every call (unary and the job stream), TLS and client certificates work, and the worker runtime
uses the factory for every channel it opens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from support.certs import Pki, make_pki, make_untrusted_client
from support.fake_worker_service import FakeWorkerService, start_fake_server

from jobq.config import WorkerSettings
from jobq.observability.metrics import WorkerMetrics
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.worker.command_executor import COMMANDS_OFF
from jobq.worker.connection import WorkerCredentials, connect, load_credentials
from jobq.worker.executor import JobExecutor
from jobq.worker.job_user import AS_WORKER
from jobq.worker.runtime import WorkerRuntime

# Nothing here reaches a PostgreSQL of the tests' choosing (none, or make run's embedded
# one): `make test` runs it, `make test-system-pg` leaves it out (tests/conftest.py).
pytestmark = pytest.mark.postgres_independent

TOKEN = "jq_worker_test_token"
BEARER = f"Bearer {TOKEN}"


@pytest.fixture
async def service() -> AsyncIterator[tuple[FakeWorkerService, int]]:
    fake = FakeWorkerService()
    server, port = await start_fake_server(fake)
    yield fake, port
    await server.stop(None)


CLIENT = "worker-1"
"""The client certificate (and its CN) the README's certificate commands make for a worker."""


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


def server_credentials(pki: Pki, *, require_client_auth: bool) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(pki.read("server.key"), pki.read("server.crt"))],
        root_certificates=pki.read("ca.crt") if require_client_auth else None,
        require_client_auth=require_client_auth,
    )


async def register_and_stream(
    address: str, credentials: WorkerCredentials, service: FakeWorkerService
) -> None:
    """One unary call, one assignment read from the stream, one more unary call."""
    channel, stub = connect(address, credentials)
    try:
        reply = await stub.RegisterWorker(pb.RegisterWorkerRequest(worker_id="w"), timeout=10)
        assert reply.worker_id == "w"
        service.assign(b"{}")
        stream = stub.StreamJobBatches(pb.StreamJobsRequest(worker_id="w"))
        async with asyncio.timeout(10):
            batch = await stream.read()
        assert isinstance(batch, pb.JobAssignmentBatch)
        stream.cancel()
        await stub.AckJobs(pb.AckJobsRequest(worker_id="w"), timeout=10)
    finally:
        await channel.close()


async def test_the_token_arrives_with_unary_calls_and_the_stream(
    service: tuple[FakeWorkerService, int],
) -> None:
    fake, port = service
    credentials = load_credentials(WorkerSettings(token=TOKEN))
    await register_and_stream(f"127.0.0.1:{port}", credentials, fake)
    assert [call.method for call in fake.calls] == ["RegisterWorker", "StreamJobBatches", "AckJobs"]
    assert all(call.metadata.get("authorization") == BEARER for call in fake.calls)


async def test_without_a_token_no_authorization_is_sent(
    service: tuple[FakeWorkerService, int],
) -> None:
    fake, port = service
    await register_and_stream(f"127.0.0.1:{port}", WorkerCredentials(), fake)
    assert fake.calls
    assert all("authorization" not in call.metadata for call in fake.calls)


async def test_mutual_tls_with_a_token(pki: Pki) -> None:
    fake = FakeWorkerService()
    server, port = await start_fake_server(fake, server_credentials(pki, require_client_auth=True))
    try:
        settings = WorkerSettings(
            token=TOKEN,
            tls_ca=pki.ca,
            tls_cert=pki.file(f"{CLIENT}.crt"),
            tls_key=pki.file(f"{CLIENT}.key"),
        )
        await register_and_stream(f"localhost:{port}", load_credentials(settings), fake)
        assert fake.calls
        for call in fake.calls:
            assert call.metadata.get("authorization") == BEARER
            assert call.peer_common_name == CLIENT
        # Without a client certificate the server (requiring one) refuses the handshake.
        server_only = load_credentials(WorkerSettings(tls_ca=pki.ca))
        channel, stub = connect(f"localhost:{port}", server_only)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RegisterWorker(pb.RegisterWorkerRequest(worker_id="w"), timeout=5)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        await channel.close()
    finally:
        await server.stop(None)


async def test_tls_verifies_the_server_against_the_ca(pki: Pki, tmp_path: Path) -> None:
    fake = FakeWorkerService()
    server, port = await start_fake_server(fake, server_credentials(pki, require_client_auth=False))
    try:
        ok = load_credentials(WorkerSettings(tls_ca=pki.ca))
        await register_and_stream(f"localhost:{port}", ok, fake)
        other = make_untrusted_client(tmp_path)  # its CA did not sign the server's certificate
        wrong_ca = load_credentials(WorkerSettings(tls_ca=other.ca))
        channel, stub = connect(f"localhost:{port}", wrong_ca)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RegisterWorker(pb.RegisterWorkerRequest(worker_id="w"), timeout=5)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        await channel.close()
    finally:
        await server.stop(None)


async def test_the_runtime_sends_the_token_on_every_call_and_reports_refusals(
    service: tuple[FakeWorkerService, int], tmp_path: Path
) -> None:
    """The real WorkerRuntime and JobExecutor (default: no command jobs) against the fake
    server: payloads it must refuse come back as JOB_OUTCOME_REFUSED, without an
    acknowledgement, and nothing runs."""
    fake, port = service
    settings = WorkerSettings(
        server_addr=f"127.0.0.1:{port}",
        heartbeat_interval_s=0.2,
        shutdown_grace_period_s=1,
        token=TOKEN,
    )
    executor = JobExecutor(
        imports=(), allowed_commands=(), max_output_bytes=1024, job_user=AS_WORKER
    )
    runtime = WorkerRuntime(settings, executor, WorkerMetrics(), load_credentials(settings))
    marker = tmp_path / "ran"
    preload = fake.assign(
        json.dumps(
            {"command": ["touch", str(marker)], "env": {"LD_PRELOAD": str(tmp_path / "x.so")}}
        ).encode()
    )
    command = fake.assign(json.dumps({"command": ["touch", str(marker)]}).encode())
    system = fake.assign(json.dumps({"handler": "os:system", "args": ["id"]}).encode())
    missing = fake.assign(json.dumps({"handler": "no_such_task"}).encode())
    running = asyncio.create_task(runtime.run())
    try:
        results = {job_id: await fake.result_for(job_id) for job_id in (preload, command, system)}
        not_found = await fake.result_for(missing)
        async with asyncio.timeout(10):  # at least one heartbeat too
            while "Heartbeat" not in fake.methods_called():
                await asyncio.sleep(0.05)
    finally:
        runtime.request_stop()
        assert await asyncio.wait_for(running, 30) == 0
    assert all(r.outcome == pb.JOB_OUTCOME_REFUSED for r in results.values())
    assert "LD_PRELOAD" in results[preload].error_message
    assert results[command].error_message == COMMANDS_OFF
    assert results[system].error_message == "handler not allowed: os:system"
    assert not marker.exists()
    # "not found" may succeed elsewhere or later: an ordinary failure, retried by the server.
    assert not_found.outcome == pb.JOB_OUTCOME_FAILED
    acknowledged = {ack.job_id for ack in fake.acks}
    assert not acknowledged & {preload, command, system}
    assert {"RegisterWorker", "StreamJobBatches", "Heartbeat", "ReportResults", "Deregister"} <= (
        fake.methods_called()
    )
    assert all(call.metadata.get("authorization") == BEARER for call in fake.calls)
