"""The exposition carries exactly the SPEC §11 names and labels, one registry per program."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from jobq.observability.metrics import ServerMetrics, WorkerMetrics

SERVER_METRICS: dict[str, tuple[str, set[str]]] = {
    # exposed family name → (type, label names)
    "jq_jobs_submitted": ("counter", {"queue"}),
    "jq_jobs_completed": ("counter", {"queue", "status"}),
    "jq_job_retries": ("counter", {"queue"}),
    "jq_jobs_dead_lettered": ("counter", {"queue", "reason"}),
    "jq_job_queue_depth": ("gauge", {"queue", "status"}),
    "jq_job_wait_seconds": ("histogram", {"queue"}),
    "jq_job_duration_seconds": ("histogram", {"queue"}),
    "jq_workers": ("gauge", {"status"}),
    "jq_scheduler_cycle_duration_seconds": ("histogram", set()),
    "jq_scheduler_jobs_assigned": ("counter", set()),
    "jq_grpc_requests": ("counter", {"service", "method", "code"}),
    "jq_grpc_request_duration_seconds": ("histogram", {"service", "method"}),
    "jq_redis_operation_duration_seconds": ("histogram", {"operation"}),
    "jq_redis_errors": ("counter", set()),
    "jq_kafka_publish_errors": ("counter", {"topic"}),
    "jq_events_published": ("counter", {"topic"}),
    "jq_events_outbox_lag_events": ("gauge", set()),
    "jq_events_outbox_lag_seconds": ("gauge", set()),
    "jq_events_publisher_active": ("gauge", set()),
    "jq_db_errors": ("counter", set()),
    "jq_queue_oldest_pending_age_seconds": ("gauge", {"queue"}),
    "jq_queue_workers_online": ("gauge", {"queue"}),
    "jq_server_ready": ("gauge", set()),
    "jq_workers_lost": ("counter", set()),
}

WORKER_METRICS: dict[str, tuple[str, set[str]]] = {
    "jq_worker_active_jobs": ("gauge", set()),
    "jq_worker_slots": ("gauge", set()),
    "jq_worker_jobs": ("counter", {"result"}),
    "jq_worker_job_duration_seconds": ("histogram", set()),
    "jq_worker_reconnects": ("counter", set()),
}


def samples(body: bytes) -> dict[str, list[Sample]]:
    """Samples of the exposition by family name (counters without `_total`, as the parser
    names families)."""
    return {
        family.name: list(family.samples)
        for family in text_string_to_metric_families(body.decode())
        if family.name.startswith("jq_")
    }


def families(body: bytes) -> dict[str, str]:
    return {
        family.name: family.type
        for family in text_string_to_metric_families(body.decode())
        if family.name.startswith("jq_")
    }


def exercise_server(m: ServerMetrics) -> None:
    """Touch every labelled metric once so each has a sample to inspect."""
    m.jobs_submitted.labels(queue="q").inc()
    m.jobs_completed.labels(queue="q", status="DONE").inc()
    m.job_retries.labels(queue="q").inc()
    m.jobs_dead_lettered.labels(queue="q", reason="CANCELLED").inc()
    m.job_queue_depth.labels(queue="q", status="PENDING").set(3)
    m.job_wait_seconds.labels(queue="q").observe(0.002)
    m.job_duration_seconds.labels(queue="q").observe(1.5)
    m.workers.labels(status="ONLINE").set(2)
    m.scheduler_cycle_duration_seconds.observe(0.001)
    m.scheduler_jobs_assigned.inc(5)
    m.grpc_requests.labels(service="JobService", method="SubmitJob", code="OK").inc()
    m.grpc_request_duration_seconds.labels(service="JobService", method="SubmitJob").observe(0.01)
    m.redis_operation_duration_seconds.labels(operation="acquire").observe(0.0003)
    m.redis_errors.inc()
    m.kafka_publish_errors.labels(topic="job.completed").inc()
    m.events_published.labels(topic="job.completed").inc()
    m.db_errors.inc()
    m.set_oldest_pending_age({"q": 12.5})
    m.set_workers_online({"q": 0})
    m.server_ready.set(1)
    m.workers_lost.inc()


def test_server_exposes_every_spec_metric_with_its_type_and_labels() -> None:
    metrics = ServerMetrics()
    exercise_server(metrics)
    body, content_type = metrics.render()

    assert content_type.startswith("text/plain")
    found = families(body)
    assert found == {name: kind for name, (kind, _) in SERVER_METRICS.items()}
    by_family = samples(body)
    for name, (_, labels) in SERVER_METRICS.items():
        sample_labels = {key for s in by_family[name] for key in s.labels if key != "le"}
        assert sample_labels == labels, name


def test_counters_are_exposed_with_the_total_suffix() -> None:
    metrics = ServerMetrics()
    exercise_server(metrics)
    text = metrics.render()[0].decode()

    for name, (kind, _) in SERVER_METRICS.items():
        if kind == "counter":
            assert f"\n{name}_total" in text, name
            assert f"{name}_total_total" not in text


def test_worker_exposes_every_spec_metric() -> None:
    metrics = WorkerMetrics()
    metrics.worker_active_jobs.set(1)
    metrics.worker_jobs.labels(result="success").inc()
    metrics.worker_job_duration_seconds.observe(0.2)
    metrics.worker_reconnects.inc()
    body, _ = metrics.render()

    assert families(body) == {name: kind for name, (kind, _) in WORKER_METRICS.items()}
    by_family = samples(body)
    for name, (_, labels) in WORKER_METRICS.items():
        assert {k for s in by_family[name] for k in s.labels if k != "le"} == labels, name


def test_registries_are_separate_per_instance() -> None:
    first, second = ServerMetrics(), ServerMetrics()
    first.jobs_submitted.labels(queue="q").inc(7)

    assert [s.value for s in samples(first.render()[0])["jq_jobs_submitted"]] == [7]
    assert samples(second.render()[0])["jq_jobs_submitted"] == []


def test_process_collectors_are_on_by_default_and_can_be_turned_off() -> None:
    with_process = ServerMetrics().render()[0].decode()
    without = ServerMetrics(process_collectors=False).render()[0].decode()

    assert "python_info" in with_process
    assert "python_info" not in without


def test_every_worker_status_is_a_series_from_the_start() -> None:
    found = samples(ServerMetrics().render()[0])["jq_workers"]

    assert {s.labels["status"]: s.value for s in found} == {
        "ONLINE": 0,
        "OFFLINE": 0,
        "DRAINING": 0,
    }


def test_latency_buckets_resolve_milliseconds() -> None:
    metrics = ServerMetrics()
    metrics.redis_operation_duration_seconds.labels(operation="acquire").observe(0.0004)
    found = samples(metrics.render()[0])["jq_redis_operation_duration_seconds"]
    bucket = {s.labels["le"]: s.value for s in found if s.name.endswith("_bucket")}

    assert bucket["0.0005"] == 1
    assert float(max((le for le in bucket if le != "+Inf"), key=float)) >= 60


def depth(metrics: ServerMetrics) -> dict[tuple[str, str], float]:
    found = samples(metrics.render()[0]).get("jq_job_queue_depth", [])
    return {(s.labels["queue"], s.labels["status"]): s.value for s in found}


def test_queue_depth_is_set_from_a_mapping() -> None:
    metrics = ServerMetrics()
    metrics.set_queue_depth({("a", "PENDING"): 4, ("a", "RUNNING"): 1, ("b", "PENDING"): 2})

    assert depth(metrics) == {("a", "PENDING"): 4, ("a", "RUNNING"): 1, ("b", "PENDING"): 2}


def test_queue_depth_zeroes_label_sets_that_disappeared() -> None:
    metrics = ServerMetrics()
    metrics.set_queue_depth({("a", "PENDING"): 4, ("b", "RUNNING"): 1})
    metrics.set_queue_depth({("a", "PENDING"): 3})

    assert depth(metrics) == {("a", "PENDING"): 3, ("b", "RUNNING"): 0}

    metrics.set_queue_depth({})
    assert depth(metrics) == {("a", "PENDING"): 0, ("b", "RUNNING"): 0}

    metrics.set_queue_depth({("b", "RUNNING"): 6})
    assert depth(metrics) == {("a", "PENDING"): 0, ("b", "RUNNING"): 6}


def test_labelled_children_are_resolved_once_and_count_into_the_metric() -> None:
    from prometheus_client import CollectorRegistry, Counter

    from jobq.observability.metrics import LabelledChildren

    registry = CollectorRegistry()
    counter = Counter("c", "test", ["queue"], registry=registry)
    children = LabelledChildren()
    first = children.of(counter, "a")
    assert children.of(counter, "a") is first
    assert children.of(counter, "b") is not first
    first.inc()
    children.of(counter, "a").inc(2)
    assert registry.get_sample_value("c_total", {"queue": "a"}) == 3
    assert registry.get_sample_value("c_total", {"queue": "b"}) == 0


def test_queue_gauges_zero_the_queues_that_disappeared() -> None:
    metrics = ServerMetrics()
    metrics.set_oldest_pending_age({"a": 30.0, "b": 5.0})
    metrics.set_workers_online({"a": 2, "b": 0})
    metrics.set_oldest_pending_age({"b": 7.0})
    metrics.set_workers_online({"b": 1})

    found = samples(metrics.render()[0])
    ages = {s.labels["queue"]: s.value for s in found["jq_queue_oldest_pending_age_seconds"]}
    online = {s.labels["queue"]: s.value for s in found["jq_queue_workers_online"]}
    assert ages == {"a": 0.0, "b": 7.0}
    assert online == {"a": 0.0, "b": 1.0}
