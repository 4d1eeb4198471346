-- OpenTelemetry traces (issue 20): the W3C trace context of the span that submitted a job
-- (its `traceparent`, then a newline and its `tracestate` when it has one), so that the claim,
-- the dispatch and the run on a worker, however much later, join the trace of the request
-- that submitted it. NULL when tracing was off at the submit (the usual case: no cost beyond
-- the NULL). Bounded as the server bounds what it accepts: 55 characters of traceparent, a
-- newline and at most 512 of tracestate. A nullable column without a default is added
-- without rewriting the table.
ALTER TABLE jobs ADD COLUMN trace_context text NULL
    CONSTRAINT jobs_trace_context_bounded CHECK (length(trace_context) <= 568);
