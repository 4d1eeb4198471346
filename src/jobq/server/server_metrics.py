"""jq-server's side of its Prometheus metrics: what RPCs and the database report into them,
and the /metrics route, which refreshes the gauges that need a query when scraped.

The metric definitions themselves live in `observability/metrics.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from jobq.observability.http_endpoints import READY_CHECK_TIMEOUT_S, Response, Route
from jobq.observability.logging_setup import get_logger
from jobq.observability.metrics import LabelledChildren, ServerMetrics
from jobq.storage.stores import JobStore, WorkerStore

log = get_logger("jobq.server")

GAUGE_MIN_INTERVAL_S = 1.0


class MetricsObserver:
    """Feeds RPC outcomes and database errors into the server's Prometheus metrics."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics
        self._children = LabelledChildren()

    def rpc_finished(self, service: str, method: str, code: str, seconds: float) -> None:
        m = self._metrics
        self._children.of(m.grpc_requests, service, method, code).inc()
        self._children.of(m.grpc_request_duration_seconds, service, method).observe(seconds)

    def database_error(self) -> None:
        self._metrics.db_errors.inc()


async def refresh_gauges(
    metrics: ServerMetrics,
    jobs: JobStore,
    workers: WorkerStore,
    events: EventGauges | None = None,
) -> None:
    """Queue depth per status, the oldest pending job's age and the ONLINE workers per queue,
    workers per status, counted in the database, and the event outbox's lag when Kafka is
    enabled."""
    if events is not None:
        await events.refresh_gauges()
    depth = await jobs.jobs_active_depth()
    metrics.set_queue_depth(
        {(queue, status.value): count for (queue, status), count in depth.counts.items()}
    )
    metrics.set_oldest_pending_age(depth.oldest_pending_s)
    online = await workers.workers_online_by_queue()
    # A queue with unfinished jobs and nobody to run them is the case to alert on, so it gets a
    # 0 series of its own rather than no series (which an alert cannot tell from a typo).
    unserved = {queue for queue, _ in depth.counts} - online.keys()
    metrics.set_workers_online({**online, **dict.fromkeys(unserved, 0)})
    for status, count in (await workers.worker_counts()).items():
        metrics.workers.labels(status=status.value).set(count)


class EventGauges(Protocol):
    async def refresh_gauges(self) -> None: ...


Readiness = Callable[[], Awaitable[tuple[bool, str]]]
"""The replica's readiness decision, the one /readyz makes: (ready, why)."""


def scrape_route(
    metrics: ServerMetrics,
    gauges: Callable[[], Awaitable[None]],
    readiness: Readiness | None = None,
) -> Route:
    """/metrics: the gauges that need a query (queue depth, workers) are refreshed on scrape,
    at most once a second, so an unscraped server never runs those counts.

    `jq_server_ready` is evaluated on every scrape, apart from the other gauges: when
    PostgreSQL is down their refresh fails and they keep their last values, but readiness must
    still say 0 then. The two run side by side, so a database that does not answer costs a
    scrape one timeout, not two."""
    last_refresh = 0.0

    async def refresh() -> None:
        nonlocal last_refresh
        if time.monotonic() - last_refresh < GAUGE_MIN_INTERVAL_S:
            return
        last_refresh = time.monotonic()
        try:
            async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
                await gauges()
        except Exception as exc:  # database down: serve the last values
            log.warning("cannot refresh gauges", action="metrics.error", error=str(exc))

    async def judge_readiness() -> None:
        if readiness is None:
            return
        try:
            # ready() bounds its own database probe; this bounds the rest (the Kafka note).
            async with asyncio.timeout(2 * READY_CHECK_TIMEOUT_S):
                ok, _ = await readiness()
        except Exception as exc:  # a check that breaks is no sign of readiness
            log.warning("cannot judge readiness", action="metrics.error", error=str(exc))
            ok = False
        metrics.server_ready.set(1 if ok else 0)

    async def scrape() -> Response:
        await asyncio.gather(refresh(), judge_readiness())
        body, content_type = metrics.render()
        return 200, body, content_type

    return scrape
