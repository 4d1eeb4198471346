"""The Prometheus metrics of jq-server and jq-worker, with the names SPEC §11 fixes.

Each program gets one class holding its own `CollectorRegistry` instead of registering in
prometheus_client's global default: several servers run in one test process, and a global
registry would refuse the second set of metrics with "Duplicated timeseries".

Attribute names follow one rule, so call sites need not look them up: the exposed metric name
without the `jq_` prefix and without the `_total` suffix (`jq_jobs_submitted_total` is
`metrics.jobs_submitted`). prometheus_client appends `_total` to counters itself, which is why
counters are declared without it.

Metrics are updated from the lifecycle events (`server/lifecycle.py`), the RPC wrapper and the
collaborators that own an operation (Redis locker, Kafka sink), never scattered per call site.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from jobq.domain.states import WorkerStatus

__all__ = [
    "JOB_BUCKETS",
    "LATENCY_BUCKETS",
    "LabelledChildren",
    "ProgramMetrics",
    "ServerMetrics",
    "WorkerMetrics",
]

# In the Prometheus text format every counter and histogram would also expose a `<name>_created`
# gauge (its creation time): twice the series, which neither Prometheus nor our dashboards use.
# The switch is process-wide; these programs expose no other registry that would want them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

_Labelled = TypeVar("_Labelled", Counter, Histogram)


class LabelledChildren:
    """`metric.labels(*values)`, memoised. Resolving a labelled child costs more than updating
    it, and the per-RPC and per-transition paths update a child every time."""

    def __init__(self) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Counter | Histogram] = {}

    def of(self, metric: _Labelled, *values: str) -> _Labelled:
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return cast(_Labelled, child)


LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Buckets for operations measured in milliseconds (RPCs, scheduler cycles, Redis round trips).
prometheus_client's defaults start at 5 ms, too coarse for a sub-millisecond Redis call or a
fast unary RPC; the tail up to 60 s still shows a stall."""

JOB_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
"""Buckets for job wait and run times: no-op jobs finish in milliseconds, but real jobs and
retry backoffs (up to 300 s by default) last minutes, so the range reaches an hour."""


class ProgramMetrics:
    """A registry of one program's metrics and its text exposition.

    `process_collectors` adds the standard `process_*`, `python_info` and `python_gc_*` series
    (memory, CPU, open files) that operators expect from any Prometheus target; tests that
    compare whole expositions can turn them off.
    """

    def __init__(self, *, process_collectors: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if process_collectors:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        """The current values in the Prometheus text format, and the content type to serve."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class ServerMetrics(ProgramMetrics):
    """jq-server's metrics (SPEC §11, server list)."""

    def __init__(self, *, process_collectors: bool = True) -> None:
        super().__init__(process_collectors=process_collectors)
        r = self.registry
        self.jobs_submitted = Counter(
            "jq_jobs_submitted", "Jobs accepted by SubmitJob.", ["queue"], registry=r
        )
        self.jobs_completed = Counter(
            "jq_jobs_completed",
            "Attempts that ended, by outcome (DONE or FAILED).",
            ["queue", "status"],
            registry=r,
        )
        self.job_retries = Counter(
            "jq_job_retries", "Failed attempts scheduled for another try.", ["queue"], registry=r
        )
        self.jobs_dead_lettered = Counter(
            "jq_jobs_dead_lettered",
            "Jobs given up on, by reason (RETRIES_EXHAUSTED, CANCELLED, TTL_EXPIRED).",
            ["queue", "reason"],
            registry=r,
        )
        self.job_queue_depth = Gauge(
            "jq_job_queue_depth",
            "Jobs per queue in each non-terminal status, as last counted.",
            ["queue", "status"],
            registry=r,
        )
        self.job_wait_seconds = Histogram(
            "jq_job_wait_seconds",
            "Seconds from a job's creation to the start of its attempt.",
            ["queue"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.job_duration_seconds = Histogram(
            "jq_job_duration_seconds",
            "Seconds from the start of an attempt to its end.",
            ["queue"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.workers = Gauge("jq_workers", "Registered workers by status.", ["status"], registry=r)
        for status in WorkerStatus:  # every status is a series from the start, not on first use
            self.workers.labels(status=status.value).set(0)
        self.scheduler_cycle_duration_seconds = Histogram(
            "jq_scheduler_cycle_duration_seconds",
            "Seconds one dispatcher cycle took.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.scheduler_jobs_assigned = Counter(
            "jq_scheduler_jobs_assigned", "Jobs the dispatcher assigned to workers.", registry=r
        )
        self.grpc_requests = Counter(
            "jq_grpc_requests",
            "gRPC calls served, by outcome code.",
            ["service", "method", "code"],
            registry=r,
        )
        self.grpc_request_duration_seconds = Histogram(
            "jq_grpc_request_duration_seconds",
            "Seconds a gRPC call took to serve.",
            ["service", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_operation_duration_seconds = Histogram(
            "jq_redis_operation_duration_seconds",
            "Seconds a Redis round trip took, successful or not.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            "jq_redis_errors", "Redis operations that failed (answered fail-open).", registry=r
        )
        self.kafka_publish_errors = Counter(
            "jq_kafka_publish_errors", "Kafka deliveries that failed.", ["topic"], registry=r
        )
        self.events_published = Counter(
            "jq_events_published",
            "Lifecycle events the Kafka broker acknowledged, by topic (this replica's sends).",
            ["topic"],
            registry=r,
        )
        self.events_outbox_lag_events = Gauge(
            "jq_events_outbox_lag_events",
            "Committed lifecycle events not yet acknowledged by Kafka (the event outbox).",
            registry=r,
        )
        self.events_outbox_lag_seconds = Gauge(
            "jq_events_outbox_lag_seconds",
            "Age in seconds of the oldest event waiting in the outbox; 0 when none waits.",
            registry=r,
        )
        self.events_publisher_active = Gauge(
            "jq_events_publisher_active",
            "1 while this replica holds the event publisher's lease (publishes), else 0.",
            registry=r,
        )
        self.db_errors = Counter(
            "jq_db_errors", "PostgreSQL operations that failed unexpectedly.", registry=r
        )
        self.queue_oldest_pending_age_seconds = Gauge(
            "jq_queue_oldest_pending_age_seconds",
            "Seconds since the oldest runnable PENDING job of the queue became runnable "
            "(created, or due after a delay or retry backoff); 0 when none waits.",
            ["queue"],
            registry=r,
        )
        self.queue_workers_online = Gauge(
            "jq_queue_workers_online",
            "ONLINE workers taking jobs from the queue; 0 for a queue with unfinished jobs "
            "and no such worker.",
            ["queue"],
            registry=r,
        )
        self.server_ready = Gauge(
            "jq_server_ready",
            "1 when this replica is ready (what /readyz answers 200 for), else 0.",
            registry=r,
        )
        self.workers_lost = Counter(
            "jq_workers_lost",
            "Workers this replica declared lost (no heartbeat within the timeout).",
            registry=r,
        )
        self._depth_labels: set[tuple[str, str]] = set()
        self._age_queues: set[str] = set()
        self._online_queues: set[str] = set()

    def set_queue_depth(self, depths: Mapping[tuple[str, str], int]) -> None:
        """Replace the `jq_job_queue_depth` values with a fresh count {(queue, status): n}.

        A (queue, status) pair missing from `depths` is set to 0 rather than left at its last
        value: the count query only returns pairs that have jobs, so a queue that drained would
        otherwise show its old depth forever.
        """
        current = {(str(queue), str(status)) for queue, status in depths}
        for queue, status in self._depth_labels - current:
            self.job_queue_depth.labels(queue=queue, status=status).set(0)
        for (queue, status), count in depths.items():
            self.job_queue_depth.labels(queue=str(queue), status=str(status)).set(count)
        self._depth_labels = current

    def set_oldest_pending_age(self, ages: Mapping[str, float]) -> None:
        """Replace `jq_queue_oldest_pending_age_seconds` with {queue: seconds}; queues missing
        from `ages` (drained) go to 0, as in `set_queue_depth`."""
        self._age_queues = _replace(self.queue_oldest_pending_age_seconds, self._age_queues, ages)

    def set_workers_online(self, online: Mapping[str, int]) -> None:
        """Replace `jq_queue_workers_online` with {queue: workers}; queues missing from
        `online` go to 0, as in `set_queue_depth`."""
        self._online_queues = _replace(self.queue_workers_online, self._online_queues, online)


def _replace(gauge: Gauge, previous: set[str], values: Mapping[str, float]) -> set[str]:
    """Set a gauge labelled by queue to `values`, and to 0 for the queues of `previous` that
    `values` no longer has (they stay at 0); the queues `values` holds."""
    for queue in previous - values.keys():
        gauge.labels(queue=queue).set(0)
    for queue, value in values.items():
        gauge.labels(queue=queue).set(value)
    return set(values)


class WorkerMetrics(ProgramMetrics):
    """jq-worker's metrics (SPEC §11, worker list)."""

    def __init__(self, *, process_collectors: bool = True) -> None:
        super().__init__(process_collectors=process_collectors)
        r = self.registry
        self.worker_active_jobs = Gauge(
            "jq_worker_active_jobs", "Jobs this worker is running now.", registry=r
        )
        self.worker_slots = Gauge(
            "jq_worker_slots",
            "Jobs this worker runs at once (its concurrency); busy share = active_jobs / slots.",
            registry=r,
        )
        self.worker_jobs = Counter(
            "jq_worker_jobs",
            "Jobs this worker finished, by result (e.g. success, failure, shutdown).",
            ["result"],
            registry=r,
        )
        self.worker_job_duration_seconds = Histogram(
            "jq_worker_job_duration_seconds",
            "Seconds this worker spent running a job.",
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.worker_reconnects = Counter(
            "jq_worker_reconnects",
            "Times this worker re-registered and re-opened its stream.",
            registry=r,
        )
