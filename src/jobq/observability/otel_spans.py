"""The spans of a job's life, made with OpenTelemetry (imported only when tracing is on).

`tracing` is the door the programs use; this module does the work behind it: it builds the
tracer from the `OTEL_*` environment and opens, ends and propagates the spans. Attributes follow
OpenTelemetry's messaging conventions (`messaging.system` "jobq", the queue as
`messaging.destination.name`, the job id as `messaging.message.id`) plus jobq's own
(`jobq.attempt`, `jobq.worker_id`, `jobq.outcome`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TraceState,
)

from jobq.domain.errors import ConfigError
from jobq.domain.records import Assignment, NewJob
from jobq.observability.tracing import OTEL_PACKAGES_HINT, decode

_NO_STATE = TraceState()
SYSTEM = {"messaging.system": "jobq"}
EXPORTERS = ("otlp", "console", "none")


def tracer_from_environment(service: str, environ: Mapping[str, str]) -> Tracer:
    """A tracer whose spans go to the exporters OTEL_TRACES_EXPORTER names, each behind a
    BatchSpanProcessor (OTEL_BSP_*: export happens on its thread, off the event loop). The
    provider becomes the global one, so spans a handler makes nest under its job's run."""
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service}))
    # The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default:
    # parentbased_always_on): TracerProvider reads them itself.
    provider = TracerProvider(resource=resource)
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    for name in dict.fromkeys(n for n in names if n):
        if name != "none":
            provider.add_span_processor(BatchSpanProcessor(_exporter(name, environ)))
    trace.set_tracer_provider(provider)
    return provider.get_tracer("jobq")


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER: unknown exporter '{name}' (jobq knows {', '.join(EXPORTERS)})"
        )
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            return GrpcExporter()
        if protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpExporter,
            )

            return HttpExporter()
    except ImportError as exc:
        raise ConfigError(
            f"the OTLP exporter for {protocol} is not installed ({exc.name or exc}): "
            f"{OTEL_PACKAGES_HINT}"
        ) from None
    raise ConfigError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL: '{protocol}' is not supported (grpc or http/protobuf)"
    )


def parent(carrier: str | None) -> Context:
    """The context a span continues: a trace context jobq validated (tracing.encode), or an
    empty one (a root). Built directly from its fixed fields rather than through the
    propagator's parser: the worker and the dispatcher do this for every traced job."""
    if not carrier:
        return Context()
    traceparent, tracestate = decode(carrier)
    remote = SpanContext(
        trace_id=int(traceparent[3:35], 16),
        span_id=int(traceparent[36:52], 16),
        is_remote=True,
        trace_flags=TraceFlags(int(traceparent[53:55], 16)),
        trace_state=TraceState.from_header([tracestate]) if tracestate else _NO_STATE,
    )
    return trace.set_span_in_context(NonRecordingSpan(remote), Context())


def carrier_of(span: Span) -> str:
    """The span's context as jobq stores and sends it (see tracing.encode)."""
    context = span.get_span_context()
    traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    tracestate = context.trace_state.to_header() if context.trace_state else ""
    return f"{traceparent}\n{tracestate}" if tracestate else traceparent


class Opened:
    """Spans a step opened; `end` closes them, marked as failed when the step failed."""

    def __init__(self, spans: list[Span]) -> None:
        self._spans = spans

    def end(self, error: BaseException | None = None) -> None:
        ended = time.time_ns()
        for span in self._spans:
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end(end_time=ended)


class Spans:
    """Makes the spans of jobs with one tracer."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def submit(
        self,
        jobs: Sequence[NewJob],
        contexts: Sequence[str | None],
        call_context: str | None,
        method: str,
    ) -> tuple[list[NewJob], Opened]:
        started = time.time_ns()
        call_parent = parent(call_context)
        spans: list[Span] = []
        traced: list[NewJob] = []
        for job, own in zip(jobs, contexts, strict=True):
            # The sampler decides here, once per job: a submit span it drops (not recording)
            # leaves the job untraced, so its claim, dispatch and run cost nothing at all.
            span = self.tracer.start_span(
                "jobq.submit",
                context=parent(own) if own else call_parent,
                kind=SpanKind.PRODUCER,
                start_time=started,
                attributes={
                    **SYSTEM,
                    "messaging.operation.name": "submit",
                    "messaging.destination.name": job.queue_name,
                    "messaging.message.id": str(job.job_id),
                    "rpc.method": method,
                },
            )
            if span.is_recording():
                spans.append(span)
                job = replace(job, trace_context=carrier_of(span))
            traced.append(job)
        return traced, Opened(spans)

    def dispatch(
        self, assignments: Sequence[Assignment], started_ns: int, worker_id: UUID
    ) -> tuple[list[Assignment], Opened]:
        claimed = time.time_ns()
        spans: list[Span] = []
        out: list[Assignment] = []
        worker = str(worker_id)
        for assignment in assignments:
            if assignment.trace_context is None:
                out.append(assignment)
                continue
            job = assignment.job
            context = parent(assignment.trace_context)
            attributes: dict[str, Any] = {
                **SYSTEM,
                "messaging.destination.name": job.queue_name,
                "messaging.message.id": str(job.job_id),
                "jobq.attempt": job.attempt,
                "jobq.worker_id": worker,
            }
            # Attributes cost microseconds each: the rest are on its sibling, the dispatch.
            self.tracer.start_span(
                "jobq.claim",
                context=context,
                start_time=started_ns or claimed,
                attributes={
                    "messaging.operation.name": "claim",
                    "messaging.message.id": attributes["messaging.message.id"],
                    "jobq.attempt": job.attempt,
                },
            ).end(end_time=claimed)
            span = self.tracer.start_span(
                "jobq.dispatch",
                context=context,
                kind=SpanKind.PRODUCER,
                start_time=claimed,
                attributes={**attributes, "messaging.operation.name": "dispatch"},
            )
            if not span.is_recording():  # sampled out (a caller's unsampled context): no more
                out.append(replace(assignment, trace_context=None))
                continue
            spans.append(span)
            out.append(replace(assignment, trace_context=carrier_of(span)))
        return out, Opened(spans)

    def job(self, carrier: str, attributes: Mapping[str, Any]) -> JobTrace:
        return JobTrace(self.tracer, parent(carrier), {**SYSTEM, **attributes})


class JobTrace:
    """One attempt's spans on the worker: `begin` when it starts to run (its span is current
    while it runs, so a handler's own spans nest under it), `ran` when it stops (same task),
    `executed` once its outcome is known, `reporting` with the future of its report."""

    def __init__(self, tracer: Tracer, context: Context, attributes: dict[str, Any]) -> None:
        self._tracer = tracer
        self._context = context
        self._attributes = attributes
        self._span: Span | None = None
        self._token: object = None
        self._ended_ns = 0

    def begin(self) -> None:
        self._span = self._tracer.start_span(
            "jobq.execute",
            context=self._context,
            kind=SpanKind.CONSUMER,
            attributes={**self._attributes, "messaging.operation.name": "process"},
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span, self._context))

    def ran(self) -> None:
        self._ended_ns = time.time_ns()
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            self._token = None

    def executed(self, outcome: str, error_message: str) -> None:
        """End the run's span with its outcome (a run that never began has none)."""
        span = self._span
        if span is None:
            return
        span.set_attribute("jobq.outcome", outcome)
        if outcome != "success":
            span.set_status(Status(StatusCode.ERROR, error_message[:200] or outcome))
        span.end(end_time=self._ended_ns or None)

    def reporting(self, delivered: asyncio.Future[None], outcome: str) -> None:
        """A `jobq.report` span until the server answered for the outcome."""
        span = self._tracer.start_span(
            "jobq.report",
            context=self._context,
            kind=SpanKind.CLIENT,
            attributes={
                "messaging.operation.name": "settle",
                "messaging.message.id": self._attributes.get("messaging.message.id", ""),
                "jobq.outcome": outcome,
            },
        )

        def answered(future: asyncio.Future[None]) -> None:
            if future.cancelled() or future.exception() is not None:
                span.set_status(Status(StatusCode.ERROR, "the report was not answered"))
            span.end()

        delivered.add_done_callback(answered)
