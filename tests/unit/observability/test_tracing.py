"""The trace context's door and its propagation through a job's spans (issue 20), with
OpenTelemetry's in-memory exporter."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import StatusCode

import jobq.observability
from jobq.domain.errors import ConfigError
from jobq.domain.records import Assignment, Job, NewJob
from jobq.domain.states import JobStatus
from jobq.observability import otel_spans, tracing
from jobq.rpc import convert

TRACE_ID, SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
GOOD = f"00-{TRACE_ID}-{SPAN_ID}-01"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for the test; off again after it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(otel_spans.Spans(provider.get_tracer("test")))
    try:
        yield exporter
    finally:
        tracing.use(None)


# --- the door ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        GOOD,
        f"00-{TRACE_ID}-{SPAN_ID}-00",  # not sampled: still a context to continue
    ],
)
def test_valid_traceparents(value: str) -> None:
    assert tracing.valid_traceparent(value)
    assert tracing.encode(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        GOOD.upper(),  # W3C: lower-case hex only
        f"00-{'0' * 32}-{SPAN_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE_ID}-{SPAN_ID}-01",  # version ff is invalid; later ones unknown to us
        f"01-{TRACE_ID}-{SPAN_ID}-01",
        GOOD + "-extra",
        GOOD + "\n",
        GOOD[:-1],
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # binary metadata
        None,
    ],
)
def test_invalid_traceparents_are_ignored_with_their_tracestate(value: object) -> None:
    assert not tracing.valid_traceparent(value)
    assert tracing.encode(value, "vendor=1") is None


def test_a_tracestate_travels_with_its_traceparent_unless_it_is_oversized_or_unprintable() -> None:
    assert tracing.encode(GOOD, "a=1,b=2") == f"{GOOD}\na=1,b=2"
    assert tracing.decode(f"{GOOD}\na=1,b=2") == (GOOD, "a=1,b=2")
    assert tracing.decode(GOOD) == (GOOD, "")
    longest = "a=" + "x" * (tracing.MAX_TRACESTATE - 2)
    assert tracing.encode(GOOD, longest) == f"{GOOD}\n{longest}"
    assert tracing.encode(GOOD, longest + "x") == GOOD  # over the bound: dropped
    assert tracing.encode(GOOD, "a=1\nb=2") == GOOD  # would break the stored encoding
    assert tracing.encode(GOOD, "a=\u00e9") == GOOD


@given(st.text(max_size=80))
def test_encode_never_stores_what_it_did_not_validate(value: str) -> None:
    stored = tracing.encode(value, value)
    if stored is not None:
        traceparent, tracestate = tracing.decode(stored)
        assert traceparent == value
        assert len(stored) <= 55 + 1 + tracing.MAX_TRACESTATE  # V21's CHECK
        assert tracing.valid_traceparent(traceparent)
        assert tracestate in ("", value)


def test_the_call_metadata_gives_a_context_only_when_valid() -> None:
    assert tracing.metadata_context(None) is None
    assert tracing.metadata_context((("x-correlation-id", "abc"),)) is None
    metadata = (("traceparent", GOOD), ("tracestate", "v=1"))
    assert tracing.metadata_context(metadata) == f"{GOOD}\nv=1"
    assert tracing.metadata_context((("traceparent", "garbage"), ("tracestate", "v=1"))) is None


# --- on and off -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": " "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "false"}, True),
    ],
)
def test_tracing_is_off_unless_an_exporter_is_named(environ: dict[str, str], wanted: bool) -> None:
    assert tracing.wanted(environ) is wanted


def test_off_every_call_is_a_no_op() -> None:
    assert not tracing.enabled()
    job = NewJob(uuid4(), "default", b"{}")
    assert tracing.configure("jq-test", {}) is False
    assert tracing.submit_spans([job], [GOOD], None, "SubmitJob") is None
    assert tracing.claim_started_ns() == 0
    assert tracing.dispatch_spans([assignment("x")], 0, uuid4()) is None
    assert tracing.job_trace(GOOD, "", {}) is None


def test_tracing_asked_for_without_opentelemetry_is_a_clear_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As on an installation without the `otel` extra: OpenTelemetry cannot be imported.
    monkeypatch.delitem(sys.modules, "jobq.observability.otel_spans")
    monkeypatch.delattr(jobq.observability, "otel_spans")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigError, match=r"OpenTelemetry is not installed .*'jobq\[otel\]'"):
        tracing.configure("jq-test", {"OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing.enabled()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "unknown exporter 'jaeger'"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "'http/json' is not supported",
        ),
    ],
)
def test_exporters_jobq_cannot_make_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        otel_spans.tracer_from_environment("jq-test", environ)


# --- propagation ------------------------------------------------------------------------------


def assignment(trace_context: str | None, attempt: int = 1) -> Assignment:
    now = datetime.now(UTC)
    job = Job(
        job_id=uuid4(),
        queue_name="emails",
        payload=b"{}",
        status=JobStatus.ASSIGNED,
        priority=0,
        max_retries=3,
        retry_count=0,
        attempt=attempt,
        worker_id=uuid4(),
        result=None,
        error_message=None,
        not_before=None,
        created_at=now,
        started_at=None,
        completed_at=None,
        updated_at=now,
    )
    return Assignment(job, 60, uuid4(), False, trace_context)


def named(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.name == name]
    return span


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


async def test_a_jobs_spans_chain_from_the_callers_span_to_its_report(
    exported: InMemorySpanExporter,
) -> None:
    job = NewJob(uuid4(), "emails", b"{}")
    opened = tracing.submit_spans([job], [f"{GOOD}\nvendor=v1"], None, "SubmitJobs")
    assert opened is not None
    [stored], submits = opened
    submits.end()
    assert stored.job_id == job.job_id
    assert stored.trace_context is not None
    assert stored.trace_context.startswith(f"00-{TRACE_ID}-")
    assert stored.trace_context.endswith("\nvendor=v1")  # the caller's tracestate goes along

    claimed = assignment(stored.trace_context)
    dispatched = tracing.dispatch_spans([claimed], tracing.claim_started_ns(), uuid4())
    assert dispatched is not None
    [sent], dispatches = dispatched
    dispatches.end()
    message = convert.assignment_to_proto(sent)
    assert message.traceparent.startswith(f"00-{TRACE_ID}-")
    assert message.tracestate == "vendor=v1"
    assert message.job_id == str(claimed.job.job_id)

    run = tracing.job_trace(message.traceparent, message.tracestate, {"jobq.attempt": 1})
    assert run is not None
    run.begin()
    current = trace.get_current_span()  # a handler's own spans nest under the run
    run.ran()
    assert trace.get_current_span() is not current
    run.executed("failure", "boom")
    delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    run.reporting(delivered, "failure")
    assert not any(s.name == "jobq.report" for s in exported.get_finished_spans())
    delivered.set_result(None)
    await asyncio.sleep(0)  # the done callback runs on the loop

    spans = exported.get_finished_spans()
    submit, claim, dispatch = (
        named(spans, n) for n in ("jobq.submit", "jobq.claim", "jobq.dispatch")
    )
    execute, report = named(spans, "jobq.execute"), named(spans, "jobq.report")
    assert {f"{s.context.trace_id:032x}" for s in spans} == {TRACE_ID}
    assert parent_of(submit) == int(SPAN_ID, 16)
    assert parent_of(claim) == submit.context.span_id
    assert parent_of(dispatch) == submit.context.span_id
    assert parent_of(execute) == dispatch.context.span_id
    assert parent_of(report) == dispatch.context.span_id
    assert current.get_span_context().span_id == execute.context.span_id
    assert execute.status.status_code is StatusCode.ERROR
    assert execute.attributes is not None
    assert execute.attributes["jobq.outcome"] == "failure"
    assert submit.attributes is not None
    assert submit.attributes["messaging.message.id"] == str(job.job_id)
    assert claim.attributes is not None
    assert claim.attributes["jobq.attempt"] == 1
    assert submit.end_time is not None
    assert claim.start_time is not None
    assert claim.start_time >= submit.end_time - 1  # the claim came after the submit


def test_jobs_without_a_context_of_their_own_take_the_calls_or_start_a_trace(
    exported: InMemorySpanExporter,
) -> None:
    jobs = [NewJob(uuid4(), "q", b"{}") for _ in range(3)]
    other = f"00-{'1' * 32}-{'2' * 16}-01"
    opened = tracing.submit_spans(jobs, [None, other, None], GOOD, "SubmitJobs")
    assert opened is not None
    traced, spans = opened
    spans.end(RuntimeError("insert failed"))
    assert [t.job_id for t in traced] == [j.job_id for j in jobs]
    submits = exported.get_finished_spans()
    assert [f"{s.context.trace_id:032x}" for s in submits] == [TRACE_ID, "1" * 32, TRACE_ID]
    assert all(s.status.status_code is StatusCode.ERROR for s in submits)
    exported.clear()
    opened = tracing.submit_spans(jobs[:1], [None], None, "SubmitJob")
    assert opened is not None
    opened[1].end()
    [root] = exported.get_finished_spans()
    assert root.parent is None


def test_untraced_assignments_are_dispatched_as_they_are(exported: InMemorySpanExporter) -> None:
    plain = assignment(None)
    assert tracing.dispatch_spans([plain], tracing.claim_started_ns(), uuid4()) is None
    mixed = tracing.dispatch_spans([plain, assignment(GOOD)], 0, uuid4())
    assert mixed is not None
    sent, spans = mixed
    spans.end()
    assert sent[0] is plain
    assert sent[1].trace_context is not None
    assert sent[1].trace_context != GOOD  # the dispatch span's context, a child of GOOD
    assert convert.assignment_to_proto(plain).traceparent == ""
    assert {s.name for s in exported.get_finished_spans()} == {"jobq.claim", "jobq.dispatch"}


def test_the_sdk_sends_the_callers_current_span() -> None:
    provider = TracerProvider()
    assert tracing.caller_context() is None  # no span current
    with provider.get_tracer("app").start_as_current_span("GET /orders") as span:
        caller = tracing.caller_context()
    assert caller is not None
    context = span.get_span_context()
    traceparent, tracestate = caller
    assert traceparent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    assert tracing.valid_traceparent(traceparent)
    assert tracestate == ""


def test_a_job_the_sampler_drops_carries_no_context_and_costs_nothing_after() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(otel_spans.Spans(provider.get_tracer("test")))
    try:
        jobs = [NewJob(uuid4(), "q", b"{}") for _ in range(2)]
        sampled_parent = GOOD  # flags 01: ParentBased follows the caller's decision
        dropped_parent = f"00-{TRACE_ID}-{SPAN_ID}-00"
        opened = tracing.submit_spans(jobs, [sampled_parent, dropped_parent], None, "SubmitJobs")
        assert opened is not None
        traced, spans = opened
        spans.end()
        assert traced[0].trace_context is not None
        assert traced[1].trace_context is None
        assert traced[1] is jobs[1]
        [kept] = exporter.get_finished_spans()
        assert kept.attributes is not None
        assert kept.attributes["messaging.message.id"] == str(jobs[0].job_id)
        assert tracing.dispatch_spans([assignment(None)], 0, uuid4()) is None
    finally:
        tracing.use(None)
