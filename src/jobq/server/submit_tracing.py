"""A submit's `jobq.submit` spans around its insert, when tracing is on (issue 20).

Kept out of job_service.py so that a submit with tracing off runs exactly as before: the
servicer calls this only when `tracing.enabled()`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from jobq.domain.records import NewJob
from jobq.observability import tracing
from jobq.rpc._gen import job_service_pb2 as pb

T = TypeVar("T")


async def traced_insert(
    jobs: Sequence[NewJob],
    requests: Sequence[pb.SubmitJobRequest],
    metadata: Iterable[tuple[str, str | bytes]] | None,
    method: str,
    insert: Callable[[list[NewJob]], Awaitable[T]],
) -> T:
    """Insert `jobs` (parsed from `requests`, in order) with each one's submit span open, its
    parent the request's trace context, else the call's metadata's; the jobs stored carry their
    span's context. A context that fails validation is ignored (W3C: a new trace starts)."""
    contexts = [tracing.encode(r.traceparent, r.tracestate) for r in requests]
    opened = tracing.submit_spans(jobs, contexts, tracing.metadata_context(metadata), method)
    if opened is None:
        return await insert(list(jobs))
    traced, spans = opened
    try:
        result = await insert(traced)
    except BaseException as exc:
        spans.end(exc)
        raise
    spans.end()
    return result
