"""/metrics values, the gRPC health service, reflection, and correlation ids."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from support.payloads import job_payload
from support.processes import free_port
from support.protocol_worker import ProtocolWorker
from support.server_harness import running_server

from jobq.rpc._gen import job_service_pb2 as jpb


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_count_submits_completions_depth_and_rpcs(db_dsn: str) -> None:
    async with running_server(db_dsn, {"metrics.port": free_port()}) as (app, client):
        assert app.metrics_port is not None
        for i in range(3):
            await client.jobs.SubmitJob(
                jpb.SubmitJobRequest(queue_name="default", payload=job_payload(str(i).encode())),
                timeout=5,
            )
        with pytest.raises(grpc.aio.AioRpcError):
            await client.jobs.GetJobStatus(
                jpb.GetJobStatusRequest(job_id=str(uuid.uuid4())), timeout=5
            )
        worker = await ProtocolWorker(client, concurrency=2).start()
        await worker.run(await worker.take(2))
        await worker.take(1)  # the third is assigned and left unacknowledged
        samples = await asyncio.to_thread(_scrape, app.metrics_port)
        q = (("queue", "default"),)
        assert samples[("jq_jobs_submitted_total", q)] == 3
        assert samples[("jq_jobs_completed_total", (("queue", "default"), ("status", "DONE")))] == 2
        assert samples[("jq_job_queue_depth", (("queue", "default"), ("status", "ASSIGNED")))] == 1
        assert (
            samples.get(("jq_job_queue_depth", (("queue", "default"), ("status", "PENDING"))), 0)
            == 0
        )
        assert samples[("jq_workers", (("status", "ONLINE"),))] == 1
        assert samples[("jq_scheduler_jobs_assigned_total", ())] == 3
        assert samples[("jq_job_wait_seconds_count", q)] == 2
        assert samples[("jq_job_duration_seconds_count", q)] == 2
        ok = (("code", "OK"), ("method", "SubmitJob"), ("service", "JobService"))
        assert samples[("jq_grpc_requests_total", ok)] == 3
        missing = (("code", "NOT_FOUND"), ("method", "GetJobStatus"), ("service", "JobService"))
        assert samples[("jq_grpc_requests_total", missing)] == 1
        await worker.close()


async def test_grpc_health_and_reflection(db_dsn: str) -> None:
    async with running_server(db_dsn) as (_, client):
        reply = await health_pb2_grpc.HealthStub(client.channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = set()
        async for response in responses:
            names |= {s.name for s in response.list_services_response.service}
        assert {"jobq.v1.JobService", "jobq.v1.WorkerService", "jobq.v1.AdminService"} <= names


async def test_the_correlation_id_comes_back_and_a_fresh_one_is_made(db_dsn: str) -> None:
    async with running_server(db_dsn) as (_, client):
        call = client.jobs.SubmitJob(
            jpb.SubmitJobRequest(queue_name="default", payload=job_payload(b"x")),
            metadata=(("x-correlation-id", "req-42"),),
            timeout=5,
        )
        await call
        trailing = dict(await call.trailing_metadata() or ())
        assert trailing["x-correlation-id"] == "req-42"
        call = client.jobs.SubmitJob(
            jpb.SubmitJobRequest(queue_name="default", payload=job_payload(b"y")), timeout=5
        )
        await call
        generated = dict(await call.trailing_metadata() or ())["x-correlation-id"]
        assert generated
        assert generated != "req-42"
