"""The audit trail over real gRPC against a real database: every admin action (queue
create/delete, worker drain/shutdown, job cancel/retry) leaves one record with the caller, the
action, its target and its outcome, refusals included; ListAuditEvents reads them back."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

import asyncpg
import grpc
import pytest
from support.auth import Tokens, bearer
from support.payloads import job_payload
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, running_server

from jobq.domain.errors import QueueNotFound
from jobq.domain.records import AuditEvent, AuditPage, NewAuditEvent
from jobq.observability.logging_setup import configure_logging, reset_logging
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import worker_service_pb2 as wpb
from jobq.server.audit import AuditTrail
from jobq.storage.postgres.audit import PgAuditStore

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
async def client(db_dsn: str) -> AsyncIterator[Client]:
    async with running_server(db_dsn) as (_, connected):
        yield connected


async def _fails(call: Awaitable[Any], code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is code, caught.value.details()
    return caught.value.details() or ""


async def _audit(client: Client, **fields: Any) -> list[apb.AuditEvent]:
    reply = await client.admin.ListAuditEvents(apb.ListAuditEventsRequest(**fields), timeout=5)
    return list(reply.events)


def _summary(event: apb.AuditEvent) -> tuple[str, str, str, str]:
    return (event.actor, event.action, event.target, event.outcome)


async def _submit(client: Client, queue: str = "default") -> str:
    request = jpb.SubmitJobRequest(queue_name=queue, payload=job_payload())
    return (await client.jobs.SubmitJob(request, timeout=5)).job_id


async def test_each_admin_action_leaves_one_record(client: Client) -> None:
    await client.admin.CreateQueue(apb.CreateQueueRequest(name="mail", max_retries=2), timeout=5)
    job_id = await _submit(client, "mail")
    await client.jobs.CancelJob(jpb.CancelJobRequest(job_id=job_id), timeout=5)
    await client.jobs.RetryJob(jpb.RetryJobRequest(job_id=job_id), timeout=5)
    await client.jobs.CancelJob(jpb.CancelJobRequest(job_id=job_id), timeout=5)
    await client.admin.DeleteQueue(apb.DeleteQueueRequest(name="mail", force=True), timeout=5)
    worker = await ProtocolWorker(client).start()
    await client.admin.DrainWorker(apb.DrainWorkerRequest(worker_id=worker.worker_id), timeout=5)
    request = apb.ShutdownWorkerRequest(worker_id=worker.worker_id)
    await client.admin.ShutdownWorker(request, timeout=5)
    await worker.close()

    events = await _audit(client)
    assert [_summary(e) for e in reversed(events)] == [
        ("anonymous", "queue.create", "mail", "ok"),
        ("anonymous", "job.cancel", job_id, "ok"),
        ("anonymous", "job.retry", job_id, "ok"),
        ("anonymous", "job.cancel", job_id, "ok"),
        ("anonymous", "queue.delete", "mail", "ok"),
        ("anonymous", "worker.drain", worker.worker_id, "ok"),
        ("anonymous", "worker.shutdown", worker.worker_id, "ok"),
    ]
    details = {e.action: e.detail for e in events}
    assert details["queue.create"] == "max_retries=2, ttl_seconds=0, max_interruptions=3"
    assert details["queue.delete"] == "force=true, deleted 1 job(s)"
    assert details["job.retry"] == "queue 'mail'"
    assert details["worker.drain"] == "was ONLINE"
    assert details["worker.shutdown"] == "was DRAINING"
    assert all(e.id > 0 and e.HasField("occurred_at") for e in events)
    assert [e.id for e in events] == sorted((e.id for e in events), reverse=True)


async def test_reads_and_submits_are_not_audited(client: Client) -> None:
    job_id = await _submit(client)
    await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=5)
    await client.admin.ListQueues(apb.ListQueuesRequest(), timeout=5)
    await client.admin.GetSystemStatus(apb.GetSystemStatusRequest(), timeout=5)
    assert await _audit(client) == []


async def test_a_refused_delete_is_recorded_with_its_refusal(client: Client) -> None:
    await _submit(client)
    message = await _fails(
        client.admin.DeleteQueue(apb.DeleteQueueRequest(name="default"), timeout=5), PRECONDITION
    )
    [event] = await _audit(client)
    assert _summary(event) == (
        "anonymous",
        "queue.delete",
        "default",
        f"FAILED_PRECONDITION: {message}",
    )
    assert event.detail == "force=false"


async def test_refusals_of_every_kind_are_recorded(client: Client) -> None:
    await _fails(
        client.admin.CreateQueue(apb.CreateQueueRequest(name="default"), timeout=5),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    await _fails(client.jobs.CancelJob(jpb.CancelJobRequest(job_id="nope"), timeout=5), INVALID)
    await _fails(
        client.jobs.RetryJob(jpb.RetryJobRequest(job_id=UNKNOWN_ID), timeout=5),
        grpc.StatusCode.NOT_FOUND,
    )
    job_id = await _submit(client)
    await _fails(client.jobs.RetryJob(jpb.RetryJobRequest(job_id=job_id), timeout=5), PRECONDITION)
    request = apb.DrainWorkerRequest(worker_id=UNKNOWN_ID)
    await _fails(client.admin.DrainWorker(request, timeout=5), grpc.StatusCode.NOT_FOUND)
    outcomes = [(e.action, e.target, e.outcome) for e in reversed(await _audit(client))]
    assert outcomes == [
        ("queue.create", "default", "ALREADY_EXISTS: queue 'default' already exists"),
        ("job.cancel", "nope", outcomes[1][2]),
        ("job.retry", UNKNOWN_ID, f"NOT_FOUND: job {UNKNOWN_ID} not found"),
        ("job.retry", job_id, f"FAILED_PRECONDITION: cannot retry job {job_id}: it is PENDING"),
        ("worker.drain", UNKNOWN_ID, f"NOT_FOUND: worker {UNKNOWN_ID} not found"),
    ]
    assert outcomes[1][2].startswith("INVALID_ARGUMENT: ")


async def test_a_refused_delete_of_a_served_queue_names_the_workers(client: Client) -> None:
    request = wpb.RegisterWorkerRequest(hostname="h", concurrency=1, queues=["default"])
    worker_id = (await client.workers.RegisterWorker(request, timeout=5)).worker_id
    delete = apb.DeleteQueueRequest(name="default", force=True)
    await _fails(client.admin.DeleteQueue(delete, timeout=5), PRECONDITION)
    [event] = await _audit(client, action="queue.delete")
    assert event.outcome.startswith("FAILED_PRECONDITION: queue 'default' is served by 1 live")
    assert worker_id in event.outcome
    assert event.detail == "force=true"


async def test_an_over_long_target_is_stored_cut(client: Client) -> None:
    await _fails(
        client.admin.CreateQueue(apb.CreateQueueRequest(name="q" * 5000), timeout=5), INVALID
    )
    [event] = await _audit(client)
    assert len(event.target) == 256
    assert event.target.endswith("…")


async def test_list_filters_by_action_and_actor_and_pages(client: Client) -> None:
    for i in range(5):
        await client.admin.CreateQueue(apb.CreateQueueRequest(name=f"q{i}"), timeout=5)
    await client.admin.DeleteQueue(apb.DeleteQueueRequest(name="q0"), timeout=5)
    assert [e.target for e in await _audit(client, action="queue.delete")] == ["q0"]
    assert len(await _audit(client, actor="anonymous")) == 6
    assert await _audit(client, actor="token:someone") == []

    first = await client.admin.ListAuditEvents(
        apb.ListAuditEventsRequest(action="queue.create", limit=3), timeout=5
    )
    assert [e.target for e in first.events] == ["q4", "q3", "q2"]
    assert first.next_page_token
    rest = await client.admin.ListAuditEvents(
        apb.ListAuditEventsRequest(
            action="queue.create", limit=3, page_token=first.next_page_token
        ),
        timeout=5,
    )
    assert [e.target for e in rest.events] == ["q1", "q0"]
    assert rest.next_page_token == ""


async def test_list_defaults_to_20_and_caps_at_100(client: Client) -> None:
    for i in range(105):
        await _fails(
            client.jobs.CancelJob(jpb.CancelJobRequest(job_id=f"x{i}"), timeout=5), INVALID
        )
    assert len(await _audit(client)) == 20
    assert len(await _audit(client, limit=1000)) == 100


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"limit": -1}, "limit", id="negative-limit"),
        pytest.param({"page_token": "garbage!"}, "page_token", id="malformed-token"),
        pytest.param({"page_token": "x" * 1000}, "page_token", id="long-token"),
        pytest.param({"action": "a" * 65}, "action", id="long-action"),
        pytest.param({"actor": "a" * 257}, "actor", id="long-actor"),
        pytest.param({"action": "job\x00cancel"}, "action", id="nul-in-action"),
        pytest.param({"actor": "\x00"}, "actor", id="nul-in-actor"),
    ],
)
async def test_list_rejects_bad_input_naming_the_field(
    client: Client, fields: dict[str, Any], field: str
) -> None:
    request = apb.ListAuditEventsRequest(**fields)
    message = await _fails(client.admin.ListAuditEvents(request, timeout=5), INVALID)
    assert message.startswith(field), message


async def test_a_jobs_page_token_is_not_an_audit_page_token(client: Client) -> None:
    for _ in range(3):
        await _submit(client)
    reply = await client.jobs.ListJobs(jpb.ListJobsRequest(limit=1), timeout=5)
    request = apb.ListAuditEventsRequest(page_token=reply.next_page_token)
    message = await _fails(client.admin.ListAuditEvents(request, timeout=5), INVALID)
    assert message.startswith("page_token is invalid")


async def test_the_actor_is_the_token_name(db_dsn: str) -> None:
    tokens = Tokens.new()
    async with running_server(db_dsn, tokens.settings()) as (_, client):
        request = apb.CreateQueueRequest(name="ops")
        await client.admin.CreateQueue(request, metadata=bearer(tokens.everything), timeout=5)
        reply = await client.admin.ListAuditEvents(
            apb.ListAuditEventsRequest(actor="token:all"),
            metadata=bearer(tokens.everything),
            timeout=5,
        )
    assert [_summary(e) for e in reply.events] == [("token:all", "queue.create", "ops", "ok")]


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """JSON log lines of this test, as jq-server writes them; logging is reset afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    configure_logging("jq-server", "info", "json", stream=stream)
    yield stream
    reset_logging()
    root.setLevel(level)
    assert root.handlers == handlers


def _audit_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line.get("logger") == "jobq.audit"]


async def test_each_record_is_one_log_line_with_its_action(
    client: Client, log_stream: io.StringIO
) -> None:
    await client.admin.CreateQueue(apb.CreateQueueRequest(name="logged"), timeout=5)
    await _fails(
        client.admin.CreateQueue(apb.CreateQueueRequest(name="logged"), timeout=5),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    stored = {e.outcome: e.id for e in await _audit(client)}
    ok, refused = _audit_lines(log_stream)
    for line in (ok, refused):
        assert line["level"] == "info"
        assert (line["action"], line["actor"], line["target"]) == (
            "queue.create",
            "anonymous",
            "logged",
        )
        assert line["stored"] is True
        assert line["audit_id"] == stored[line["outcome"]]
        assert line["correlation_id"]
    assert ok["outcome"] == "ok"
    assert refused["outcome"] == "ALREADY_EXISTS: queue 'logged' already exists"


class _FailingStore:
    """An AuditStore whose writes fail, as an unreachable database would make them."""

    def __init__(self) -> None:
        self.attempts: list[NewAuditEvent] = []

    async def audit_event_insert(self, event: NewAuditEvent) -> AuditEvent:
        self.attempts.append(event)
        raise OSError("connection refused")

    async def audit_events_list(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        limit: int = 20,
        page_token: str = "",
    ) -> AuditPage:
        raise AssertionError("not read")


async def test_a_failed_audit_write_keeps_the_action_and_logs_the_whole_record(
    log_stream: io.StringIO,
) -> None:
    store = _FailingStore()
    trail = AuditTrail(store)
    done: list[str] = []
    async with trail.recording("queue.create", "kept") as note:
        done.append("acted")
        note.detail = "max_retries=3"
    assert done == ["acted"]  # no exception: the action stands
    [attempt] = store.attempts
    assert (attempt.actor, attempt.outcome, attempt.detail) == ("anonymous", "ok", "max_retries=3")
    [line] = _audit_lines(log_stream)
    assert line["level"] == "error"
    assert line["stored"] is False
    assert line["error"] == "connection refused"
    assert {k: line[k] for k in ("action", "actor", "target", "outcome", "detail")} == {
        "action": "queue.create",
        "actor": "anonymous",
        "target": "kept",
        "outcome": "ok",
        "detail": "max_retries=3",
    }


async def test_a_refusal_passes_through_unchanged_after_it_is_recorded(
    log_stream: io.StringIO,
) -> None:
    store = _FailingStore()
    trail = AuditTrail(store)
    refusal = QueueNotFound("ghost")
    with pytest.raises(QueueNotFound) as caught:
        async with trail.recording("queue.delete", "ghost"):
            raise refusal
    assert caught.value is refusal
    assert store.attempts[0].outcome == "NOT_FOUND: queue 'ghost' not found"


async def test_a_cancelled_action_is_recorded_as_cancelled(pool: asyncpg.Pool) -> None:
    trail = AuditTrail(PgAuditStore(pool))
    started = asyncio.Event()

    async def slow_action() -> None:
        async with trail.recording("job.cancel", "slow"):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(slow_action())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await trail.wait_written()
    page = await trail.store.audit_events_list()
    [event] = page.events
    assert (event.action, event.target) == ("job.cancel", "slow")
    assert event.outcome.startswith("CANCELLED: ")
