"""OpenTelemetry traces of a job's life (issue 20), off unless the `OTEL_*` environment asks.

One trace per job: the submit on jq-server (`jobq.submit`, a child of the caller's span when
the caller was traced), then per attempt the claim (`jobq.claim`) and the dispatch to a worker
(`jobq.dispatch`), and on the worker the run (`jobq.execute`, a child of the dispatch) and the
report of its outcome (`jobq.report`, until the server answered for it). The context travels
with the job as a W3C trace context (`traceparent`, `tracestate`): in SubmitJobRequest (per job:
the SDK batches many callers' submits into one call) or a submit call's metadata, in the jobs
table (`trace_context`, V21), and in the worker's JobAssignment.

This module is the only door, and it imports nothing of OpenTelemetry: the programs call it on
their hot paths, and with tracing off each call is a test of a module global. The spans
themselves are made in `otel_spans` (imported by `configure` only when tracing is asked for).

Tracing is on when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`; `none` or unset:
off) and `OTEL_SDK_DISABLED` is not `true`; the rest is OpenTelemetry's own configuration:
`OTEL_SERVICE_NAME` (default: the program's name), `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER` / `_ARG`, `OTEL_EXPORTER_OTLP_ENDPOINT` / `_PROTOCOL` / `_HEADERS` (and
their `_TRACES_` forms), `OTEL_BSP_*`.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from jobq.domain.errors import ConfigError
from jobq.domain.records import Assignment, NewJob

if TYPE_CHECKING:
    from jobq.observability.otel_spans import JobTrace as JobTrace
    from jobq.observability.otel_spans import Spans

__all__ = [
    "MAX_TRACESTATE",
    "TRACEPARENT",
    "TRACESTATE",
    "Ending",
    "caller_context",
    "claim_started_ns",
    "configure",
    "dispatch_spans",
    "enabled",
    "encode",
    "job_trace",
    "metadata_context",
    "submit_spans",
    "valid_traceparent",
    "valid_tracestate",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
"""The W3C header names, which are also the gRPC metadata keys (lower-case, as gRPC needs)."""
MAX_TRACESTATE = 512
"""W3C asks vendors to propagate at least 512 characters of tracestate; more is refused."""

# Version 00 only: a later version's fields are unknown to us (W3C lets a parser take a longer
# one's first fields; none exists, and a strict door keeps what is stored predictable). An
# all-zero trace or span id is invalid by the specification.
_TRACEPARENT = re.compile(r"00-(?!0{32}-)[0-9a-f]{32}-(?!0{16}-)[0-9a-f]{16}-[0-9a-f]{2}")
# tracestate: printable ASCII (list members, commas, optional spaces); no newline, which
# `encode` uses to join the two headers.
_TRACESTATE = re.compile(r"[\x20-\x7e]*")

OTEL_PACKAGES_HINT = "pip install 'jobq[otel]' (opentelemetry-sdk and an OTLP exporter)"

_spans: Spans | None = None


class Ending(Protocol):
    """Spans opened for a step (a submit, a dispatch): end them when it is over."""

    def end(self, error: BaseException | None = None) -> None: ...


def valid_traceparent(value: object) -> bool:
    """Whether `value` is a W3C version-00 traceparent (55 characters, ids not all zero)."""
    return isinstance(value, str) and _TRACEPARENT.fullmatch(value) is not None


def valid_tracestate(value: object) -> bool:
    """Whether `value` can be carried as a tracestate: at most MAX_TRACESTATE printable ASCII
    characters. (Its list members are parsed by OpenTelemetry, which drops malformed ones.)"""
    return (
        isinstance(value, str)
        and len(value) <= MAX_TRACESTATE
        and _TRACESTATE.fullmatch(value) is not None
    )


def encode(traceparent: object, tracestate: object = "") -> str | None:
    """The trace context as stored with a job: the traceparent, then a newline and the
    tracestate when there is one. None when the traceparent is missing or invalid (W3C: the
    receiver then starts a trace of its own, and ignores the tracestate too); an invalid
    tracestate alone is dropped."""
    if not valid_traceparent(traceparent):
        return None
    assert isinstance(traceparent, str)
    if tracestate and valid_tracestate(tracestate):
        return f"{traceparent}\n{tracestate}"
    return traceparent


def decode(carrier: str) -> tuple[str, str]:
    """(traceparent, tracestate) of a stored trace context ("" when it has no tracestate)."""
    traceparent, _, tracestate = carrier.partition("\n")
    return traceparent, tracestate


def enabled() -> bool:
    """Whether this process makes spans (configure() found tracing asked for)."""
    return _spans is not None


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces (see the module's docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() not in ("", "none")


def configure(service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on for this process if the environment asks (True), with `service` as
    the default service name. ConfigError when it asks for traces this installation cannot
    make: OpenTelemetry missing, or an exporter jobq does not know."""
    global _spans
    env = os.environ if environ is None else environ
    if not wanted(env):
        return False
    try:
        from jobq.observability import otel_spans
    except ImportError as exc:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={env.get('OTEL_TRACES_EXPORTER')} asks for traces, but "
            f"OpenTelemetry is not installed ({exc.name or exc}): {OTEL_PACKAGES_HINT}, or "
            "unset OTEL_TRACES_EXPORTER"
        ) from None
    _spans = otel_spans.Spans(otel_spans.tracer_from_environment(service, env))
    return True


def use(spans: Spans | None) -> None:
    """Make spans with `spans` (a tracer of the caller's, as tests build with an in-memory
    exporter), or stop tracing (None)."""
    global _spans
    _spans = spans


# --- the SDK: the caller's context --------------------------------------------------------------


def caller_context() -> tuple[str, str] | None:
    """(traceparent, tracestate) of the caller's current span, when the application uses
    OpenTelemetry and a span is current; None otherwise. OpenTelemetry is never imported here:
    an application that traces has imported it already, and one that does not pays one dict
    lookup per submit."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from jobq.observability.otel_context import current_context

    return current_context()


# --- jq-server ---------------------------------------------------------------------------------


def metadata_context(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The trace context of a call's gRPC metadata (`traceparent`, `tracestate`), validated."""
    traceparent: object = None
    tracestate: object = ""
    for key, value in metadata or ():
        if key == TRACEPARENT:
            traceparent = value
        elif key == TRACESTATE:
            tracestate = value
    return encode(traceparent, tracestate)


def submit_spans(
    jobs: Sequence[NewJob],
    contexts: Sequence[str | None],
    call_context: str | None,
    method: str,
) -> tuple[list[NewJob], Ending] | None:
    """Open a `jobq.submit` span per job (a child of its own context, from its request, else of
    the call's, `call_context`, else a root) and give each job its span's context to store.
    None when tracing is off (the jobs go as they are)."""
    if _spans is None:
        return None
    return _spans.submit(jobs, contexts, call_context, method)


def claim_started_ns() -> int:
    """When a claim began, for its span (0 when tracing is off: nothing reads it)."""
    return 0 if _spans is None else time.time_ns()


def dispatch_spans(
    assignments: Sequence[Assignment], started_ns: int, worker_id: UUID
) -> tuple[list[Assignment], Ending] | None:
    """Record each traced assignment's claim (`jobq.claim`, from `started_ns` until now) and open
    its dispatch (`jobq.dispatch`), whose context the assignment then carries to the worker.
    None when tracing is off or no assignment is traced."""
    if _spans is None or all(a.trace_context is None for a in assignments):
        return None
    return _spans.dispatch(assignments, started_ns, worker_id)


# --- jq-worker ---------------------------------------------------------------------------------


def job_trace(traceparent: str, tracestate: str, attributes: Mapping[str, Any]) -> JobTrace | None:
    """The spans of one attempt on the worker (`jobq.execute`, `jobq.report`), children of the
    dispatch whose context the assignment carries; None when tracing is off or it has none."""
    if _spans is None or not traceparent:
        return None
    carrier = encode(traceparent, tracestate)
    return None if carrier is None else _spans.job(carrier, attributes)
