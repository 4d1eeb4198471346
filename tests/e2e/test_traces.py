"""OpenTelemetry traces across real processes (issue 20): a job submitted through the SDK inside
a traced request is submitted, claimed, dispatched, run and reported in that request's trace.

jq-server and jq-worker export over OTLP/HTTP to a receiver in the test (tests/support/
otlp_receiver.py); the caller's span comes from an in-memory SDK provider in the test process.
"""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, Tracer
from support.job_waits import wait_status
from support.otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver
from support.processes import ServerFactory, WorkerFactory
from support.server_harness import Client, client_for

import jobq
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb

DONE = cpb.JOB_STATUS_DONE


def tracing_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # export within 50 ms, so the test waits little
    }


def by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.span_id: s for s in spans}


def ancestors(span: ReceivedSpan, index: dict[str, ReceivedSpan]) -> list[str]:
    """The names of a span's ancestors that were exported here, nearest first."""
    names = []
    while span.parent_span_id in index:
        span = index[span.parent_span_id]
        names.append(span.name)
    return names


async def test_an_sdk_submit_in_a_traced_request_runs_in_that_requests_trace(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    caller_spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(caller_spans))
    tracer = provider.get_tracer("web-app")
    with otlp_receiver() as receiver:
        env = tracing_env(receiver)
        server = start_server({"JQ_DB_DSN": db_dsn, **env})
        start_worker(server, "--import", "support.e2e_tasks", env=env)
        async with jobq.AsyncClient(f"127.0.0.1:{server.grpc_port}", timeout_s=10) as client:
            with tracer.start_as_current_span("GET /orders/7") as request_span:
                job = await client.submit("support.e2e_tasks:traced_work", 21)
            untraced = await client.submit("support.e2e_tasks:add", 1, 2)
            assert await job.result(timeout=30) == 42
            assert await untraced.result(timeout=30) == 3
        # The sync client, from an application thread inside its own traced request.
        sync_id, sync_trace = await asyncio.to_thread(sync_submit, server.grpc_port, tracer)
        [execute] = await receiver.wait_for("jobq.execute", job.id)
        [report] = await receiver.wait_for("jobq.report", job.id)
        await receiver.wait_for("jobq.claim", job.id)
        # The handler's own span is exported with its job's (same batch or the next one).
        untraced_execute = await receiver.wait_for("jobq.execute", untraced.id)
        [sync_execute] = await receiver.wait_for("jobq.execute", sync_id)
        # jq-server and jq-worker export on their own schedules: a job's execute span can
        # arrive before the server's submit and dispatch spans of the same job.
        for job_id in (job.id, untraced.id, sync_id):
            await receiver.wait_for("jobq.submit", job_id)
            await receiver.wait_for("jobq.dispatch", job_id)
        spans = receiver.snapshot()
    [web] = [s for s in caller_spans.get_finished_spans() if s.name == "GET /orders/7"]
    assert web is not None
    assert request_span.get_span_context().trace_id == web.context.trace_id
    web_trace, web_span = f"{web.context.trace_id:032x}", f"{web.context.span_id:016x}"
    index = by_id(spans)
    # Every span of the job is in the caller's trace; the chain to the caller's span is
    # submit (jq-server) -> dispatch (jq-server) -> execute (jq-worker).
    assert execute.trace_id == web_trace
    assert execute.service == "jq-worker"
    assert ancestors(execute, index) == ["jobq.dispatch", "jobq.submit"]
    submit_span = index[index[execute.parent_span_id].parent_span_id]
    assert submit_span.service == "jq-server"
    assert submit_span.parent_span_id == web_span
    assert submit_span.trace_id == web_trace
    assert report.trace_id == web_trace
    assert report.parent_span_id == execute.parent_span_id
    assert report.attributes["jobq.outcome"] == "success"
    assert execute.attributes["jobq.attempt"] == 1
    assert execute.attributes["messaging.destination.name"] == "default"
    [claim] = [s for s in spans if s.name == "jobq.claim" and s.trace_id == web_trace]
    assert claim.parent_span_id == submit_span.span_id
    [work] = [s for s in spans if s.name == "handler work" and s.trace_id == web_trace]
    assert work.parent_span_id == execute.span_id
    assert sync_execute.trace_id == f"{sync_trace.trace_id:032x}"
    assert ancestors(sync_execute, index) == ["jobq.dispatch", "jobq.submit"]
    sync_submit_span = index[index[sync_execute.parent_span_id].parent_span_id]
    assert sync_submit_span.parent_span_id == f"{sync_trace.span_id:016x}"
    # A job submitted outside any span starts a trace of its own, rooted at its submit.
    [other] = untraced_execute
    assert other.trace_id != web_trace
    assert ancestors(other, index)[-1] == "jobq.submit"
    root = [s for s in spans if s.trace_id == other.trace_id and s.name == "jobq.submit"]
    assert [s.parent_span_id for s in root] == [""]


def sync_submit(port: int, tracer: Tracer) -> tuple[str, SpanContext]:
    with (
        jobq.Client(f"127.0.0.1:{port}", timeout_s=10) as client,
        tracer.start_as_current_span("POST /sync") as span,
    ):
        job = client.submit("support.e2e_tasks:add", 2, 3)
        assert job.result(timeout=30) == 5
    return job.id, span.get_span_context()


async def test_a_traceparent_in_submit_metadata_is_the_parent_and_a_bad_one_is_ignored(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    """A client without the SDK (any gRPC client with OpenTelemetry's instrumentation) sends
    the standard `traceparent` metadata; a malformed one starts a new trace, the submit works."""
    parent_trace, parent_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with otlp_receiver() as receiver:
        env = tracing_env(receiver)
        server = start_server({"JQ_DB_DSN": db_dsn, **env})
        start_worker(server, env=env)
        client = client_for(server.grpc_port)
        good = await client.jobs.SubmitJob(
            jpb.SubmitJobRequest(queue_name="default", payload=b'{"command": ["true"]}'),
            metadata=(("traceparent", f"00-{parent_trace}-{parent_span}-01"),),
            timeout=10,
        )
        bad_id = await submit_with_metadata(
            client, (("traceparent", "00-" + "0" * 32 + "-00f067aa0ba902b7-01"),)
        )
        await wait_status(client, [good.job_id, bad_id], [DONE])
        [good_submit] = await receiver.wait_for("jobq.submit", good.job_id)
        [bad_submit] = await receiver.wait_for("jobq.submit", bad_id)
        [good_execute] = await receiver.wait_for("jobq.execute", good.job_id)
        await client.channel.close()
    assert (good_submit.trace_id, good_submit.parent_span_id) == (parent_trace, parent_span)
    assert good_execute.trace_id == parent_trace
    assert bad_submit.parent_span_id == ""
    assert bad_submit.trace_id != "0" * 32


async def submit_with_metadata(client: Client, metadata: tuple[tuple[str, str], ...]) -> str:
    reply = await client.jobs.SubmitJob(
        jpb.SubmitJobRequest(queue_name="default", payload=b'{"command": ["true"]}'),
        metadata=metadata,
        timeout=10,
    )
    return str(reply.job_id)


async def test_tracing_asked_for_with_an_unknown_exporter_is_refused_at_start(
    start_server: ServerFactory, db_dsn: str
) -> None:
    server = start_server(
        {"JQ_DB_DSN": db_dsn, "OTEL_TRACES_EXPORTER": "zipkin-of-my-dreams"}, wait=False
    )
    assert server.process.wait(timeout=60) == 2
    assert "unknown exporter 'zipkin-of-my-dreams'" in server.log_path.read_text()
