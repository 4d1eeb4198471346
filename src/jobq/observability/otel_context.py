"""The caller's current span as a W3C trace context, for the SDK's submits.

Imported by `tracing.caller_context` only once the application has imported OpenTelemetry
itself: it needs the API package (opentelemetry-api) and nothing of the SDK.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


def current_context() -> tuple[str, str] | None:
    """(traceparent, tracestate) of the current span; None when no valid span is current."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    headers: dict[str, str] = {}
    _PROPAGATOR.inject(headers)
    traceparent = headers.get("traceparent")
    if traceparent is None:
        return None
    return traceparent, headers.get("tracestate", "")
