"""JobService over real gRPC against a real database: every RPC's success path and each error
its proto documents (SPEC §4, §5). Errors must change nothing, so each error test also counts
what is in the database afterwards."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from support.payloads import job_payload, payload_of_size
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, running_server

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import worker_service_pb2 as wpb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
async def client(db_dsn: str) -> AsyncIterator[Client]:
    async with running_server(db_dsn) as (_, connected):
        yield connected


# --- helpers ---------------------------------------------------------------------------------


async def _fails(call: Awaitable[Any], code: grpc.StatusCode) -> str:
    """Await `call`, expect it to fail with `code`, and return its (human) details."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is code, caught.value.details()
    details = caught.value.details() or ""
    assert "Traceback" not in details
    return details


async def _count(dsn: str, table: str = "jobs") -> int:
    conn = await asyncpg.connect(dsn)
    try:
        n: int = await conn.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await conn.close()
    return n


async def _submit(client: Client, **fields: Any) -> str:
    fields.setdefault("queue_name", "default")
    fields.setdefault("payload", job_payload())
    reply = await client.jobs.SubmitJob(jpb.SubmitJobRequest(**fields), timeout=5)
    return reply.job_id


async def _job(client: Client, job_id: str) -> cpb.Job:
    return (await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=5)).job


async def _events(client: Client, job_id: str) -> list[cpb.JobEvent]:
    reply = await client.jobs.GetJobLogs(jpb.GetJobLogsRequest(job_id=job_id), timeout=5)
    return list(reply.events)


async def _cancel(client: Client, job_id: str) -> cpb.Job:
    return (await client.jobs.CancelJob(jpb.CancelJobRequest(job_id=job_id), timeout=5)).job


async def _list(client: Client, **fields: Any) -> jpb.ListJobsResponse:
    return await client.jobs.ListJobs(jpb.ListJobsRequest(**fields), timeout=5)


async def _submit_many(client: Client, n: int, **fields: Any) -> list[str]:
    fields.setdefault("queue_name", "default")
    jobs = [jpb.SubmitJobRequest(payload=job_payload(i), **fields) for i in range(n)]
    reply = await client.jobs.SubmitJobs(jpb.SubmitJobsRequest(jobs=jobs), timeout=10)
    return list(reply.job_ids)


def _at(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


async def _running(client: Client) -> tuple[ProtocolWorker, wpb.JobAssignment]:
    """A worker holding one fresh job, acknowledged (RUNNING)."""
    worker = await ProtocolWorker(client, concurrency=1).start()
    await _submit(client, payload=job_payload(b"run"))
    [assignment] = await worker.take(1, within=5)
    await worker.ack([assignment])
    return worker, assignment


# --- SubmitJob -------------------------------------------------------------------------------

PAYLOAD = b'{"handler": "send_email", "kwargs": {"to": "a@b.c"}}'


async def test_submit_job_adds_a_pending_job_with_the_queue_default_max_retries(
    client: Client,
) -> None:
    job_id = await _submit(client, payload=PAYLOAD, priority=7)
    assert uuid.UUID(job_id)
    job = await _job(client, job_id)
    assert job.job_id == job_id
    assert job.queue_name == "default"
    assert job.status == cpb.JOB_STATUS_PENDING
    assert job.payload == PAYLOAD
    assert job.priority == 7
    assert job.max_retries == 3  # the default queue's
    assert (job.retry_count, job.attempt, job.worker_id) == (0, 0, "")
    assert job.HasField("created_at")
    assert not job.HasField("not_before")
    assert not job.HasField("started_at")
    assert not job.HasField("completed_at")
    [event] = await _events(client, job_id)
    assert (event.from_status, event.to_status, event.reason) == (
        cpb.JOB_STATUS_UNSPECIFIED,
        cpb.JOB_STATUS_PENDING,
        "SUBMITTED",
    )


async def test_submit_job_takes_max_retries_from_its_own_queue(client: Client) -> None:
    await client.admin.CreateQueue(apb.CreateQueueRequest(name="mail", max_retries=5), timeout=5)
    job = await _job(client, await _submit(client, queue_name="mail"))
    assert (job.queue_name, job.max_retries) == ("mail", 5)


@pytest.mark.parametrize("max_retries", [0, 7, 1000])
async def test_submit_job_keeps_an_explicit_max_retries(client: Client, max_retries: int) -> None:
    job = await _job(client, await _submit(client, max_retries=max_retries))
    assert job.max_retries == max_retries


@pytest.mark.parametrize("priority", [0, 9])
async def test_submit_job_accepts_the_priority_bounds(client: Client, priority: int) -> None:
    job = await _job(client, await _submit(client, priority=priority))
    assert job.priority == priority


async def test_submit_job_with_a_delay_is_not_eligible_before_now_plus_delay(
    client: Client,
) -> None:
    job = await _job(client, await _submit(client, delay=Duration(seconds=90)))
    waited = _at(job.not_before) - _at(job.created_at)
    assert timedelta(seconds=89) < waited < timedelta(seconds=91)


async def test_submit_job_with_not_before_keeps_that_instant(client: Client) -> None:
    when = datetime(2040, 1, 2, 3, 4, 5, tzinfo=UTC)
    stamp = Timestamp()
    stamp.FromDatetime(when)
    job = await _job(client, await _submit(client, not_before=stamp))
    assert _at(job.not_before) == when
    assert job.status == cpb.JOB_STATUS_PENDING


async def test_submit_job_accepts_a_payload_of_exactly_the_limit(db_dsn: str) -> None:
    async with running_server(db_dsn, {"limits.max_payload_bytes": 1024}) as (_, client):
        job = await _job(client, await _submit(client, payload=payload_of_size(1024)))
        assert len(job.payload) == 1024


async def test_submit_job_over_the_payload_limit_is_invalid_and_writes_nothing(
    db_dsn: str,
) -> None:
    async with running_server(db_dsn, {"limits.max_payload_bytes": 1024}) as (_, client):
        request = jpb.SubmitJobRequest(queue_name="default", payload=payload_of_size(1025))
        details = await _fails(client.jobs.SubmitJob(request, timeout=5), INVALID)
        assert "1024" in details
        assert await _count(db_dsn) == 0


_NOW = Timestamp(seconds=2_000_000_000)


@pytest.mark.parametrize(
    ("fields", "mentions"),
    [
        pytest.param({"priority": -1}, "priority", id="priority-1"),
        pytest.param({"priority": 10}, "priority", id="priority-10"),
        pytest.param({"queue_name": "a b"}, "queue name", id="queue-name-space"),
        pytest.param({"queue_name": "q" * 129}, "queue name", id="queue-name-129"),
        pytest.param({"max_retries": -1}, "max_retries", id="max-retries-1"),
        pytest.param({"max_retries": 1001}, "max_retries", id="max-retries-1001"),
        pytest.param(
            {"not_before": _NOW, "delay": Duration(seconds=5)}, "not both", id="both-times"
        ),
    ],
)
async def test_submit_job_rejects_bad_input_and_writes_nothing(
    client: Client, db_dsn: str, fields: dict[str, Any], mentions: str
) -> None:
    fields = {"queue_name": "default", **fields}
    request = jpb.SubmitJobRequest(payload=job_payload(), **fields)
    details = await _fails(client.jobs.SubmitJob(request, timeout=5), INVALID)
    assert mentions in details
    assert await _count(db_dsn) == 0
    assert await _count(db_dsn, "job_events") == 0


async def test_submit_job_to_an_unknown_queue_is_not_found_and_writes_nothing(
    client: Client, db_dsn: str
) -> None:
    request = jpb.SubmitJobRequest(queue_name="nope", payload=job_payload())
    details = await _fails(client.jobs.SubmitJob(request, timeout=5), NOT_FOUND)
    assert "nope" in details
    assert await _count(db_dsn) == 0


async def test_a_queue_name_of_128_characters_is_valid(client: Client) -> None:
    name = "q" * 128
    await client.admin.CreateQueue(apb.CreateQueueRequest(name=name), timeout=5)
    job = await _job(client, await _submit(client, queue_name=name))
    assert job.queue_name == name


# --- SubmitJobs ------------------------------------------------------------------------------


async def test_submit_jobs_returns_the_ids_in_request_order(client: Client) -> None:
    ids = await _submit_many(client, 5, priority=2)
    assert len(set(ids)) == 5
    for i, job_id in enumerate(ids):
        job = await _job(client, job_id)
        assert (job.payload, job.priority, job.status) == (
            job_payload(i),
            2,
            cpb.JOB_STATUS_PENDING,
        )


async def test_submit_jobs_with_an_empty_batch_is_invalid(client: Client) -> None:
    await _fails(client.jobs.SubmitJobs(jpb.SubmitJobsRequest(), timeout=5), INVALID)


async def test_submit_jobs_over_the_batch_limit_is_invalid_and_writes_nothing(
    db_dsn: str,
) -> None:
    async with running_server(db_dsn, {"limits.max_batch_size": 3}) as (_, client):
        assert len(await _submit_many(client, 3)) == 3  # exactly the limit is fine
        jobs = [jpb.SubmitJobRequest(queue_name="default", payload=job_payload()) for _ in range(4)]
        request = jpb.SubmitJobsRequest(jobs=jobs)
        await _fails(client.jobs.SubmitJobs(request, timeout=5), INVALID)
        assert await _count(db_dsn) == 3


async def test_submit_jobs_with_one_bad_item_names_its_index_and_writes_nothing(
    client: Client, db_dsn: str
) -> None:
    jobs = [
        jpb.SubmitJobRequest(queue_name="default", payload=job_payload(b"ok")),
        jpb.SubmitJobRequest(queue_name="default", payload=job_payload(b"ok")),
        jpb.SubmitJobRequest(queue_name="default", payload=job_payload(b"bad"), priority=10),
        jpb.SubmitJobRequest(queue_name="default", payload=job_payload(b"ok")),
    ]
    details = await _fails(
        client.jobs.SubmitJobs(jpb.SubmitJobsRequest(jobs=jobs), timeout=5), INVALID
    )
    assert "job 2" in details
    assert await _count(db_dsn) == 0


def _batch_with_unknown_queue() -> jpb.SubmitJobsRequest:
    return jpb.SubmitJobsRequest(
        jobs=[
            jpb.SubmitJobRequest(queue_name="default", payload=job_payload(b"ok")),
            jpb.SubmitJobRequest(queue_name="missing", payload=job_payload(b"lost")),
            jpb.SubmitJobRequest(queue_name="default", payload=job_payload(b"ok")),
        ]
    )


async def test_submit_jobs_with_an_unknown_queue_is_not_found_and_writes_nothing(
    client: Client, db_dsn: str
) -> None:
    call = client.jobs.SubmitJobs(_batch_with_unknown_queue(), timeout=5)
    details = await _fails(call, NOT_FOUND)
    assert "missing" in details
    assert await _count(db_dsn) == 0
    assert await _count(db_dsn, "job_events") == 0


async def test_submit_jobs_names_the_index_of_the_job_with_an_unknown_queue(
    client: Client,
) -> None:
    call = client.jobs.SubmitJobs(_batch_with_unknown_queue(), timeout=5)
    details = await _fails(call, NOT_FOUND)
    assert "job 1" in details


# --- CancelJob -------------------------------------------------------------------------------


async def test_cancel_a_pending_job_dead_letters_it(client: Client) -> None:
    job_id = await _submit(client)
    cancelled = await _cancel(client, job_id)
    assert cancelled.status == cpb.JOB_STATUS_DEAD_LETTERED
    assert cancelled.HasField("completed_at")
    assert (await _job(client, job_id)).status == cpb.JOB_STATUS_DEAD_LETTERED
    last = (await _events(client, job_id))[-1]
    assert (last.from_status, last.to_status, last.reason) == (
        cpb.JOB_STATUS_PENDING,
        cpb.JOB_STATUS_DEAD_LETTERED,
        "CANCELLED",
    )


async def test_cancel_an_assigned_job_dead_letters_it(client: Client) -> None:
    worker = await ProtocolWorker(client).start()
    job_id = await _submit(client)
    [assignment] = await worker.take(1, within=5)
    assert (await _job(client, job_id)).status == cpb.JOB_STATUS_ASSIGNED
    cancelled = await _cancel(client, assignment.job_id)
    assert cancelled.status == cpb.JOB_STATUS_DEAD_LETTERED
    last = (await _events(client, job_id))[-1]
    assert (last.from_status, last.reason) == (cpb.JOB_STATUS_ASSIGNED, "CANCELLED")
    await worker.close()


async def test_cancel_a_running_job_only_requests_it(client: Client) -> None:
    """Issue 18: a RUNNING job is not ended by CancelJob (its worker runs it): the request is
    recorded and the job stays RUNNING (see test_cancel_and_progress_rpcs.py for the rest)."""
    worker, assignment = await _running(client)
    before = await _job(client, assignment.job_id)
    assert before.status == cpb.JOB_STATUS_RUNNING
    reply = await client.jobs.CancelJob(jpb.CancelJobRequest(job_id=assignment.job_id), timeout=5)
    after = await _job(client, assignment.job_id)
    assert reply.job == after
    assert (after.status, after.attempt, after.worker_id, after.cancelled_by) == (
        before.status,
        before.attempt,
        before.worker_id,
        "anonymous",
    )
    assert after.HasField("cancel_requested_at")
    await worker.close()


async def test_cancel_a_done_job_fails_and_changes_nothing(client: Client) -> None:
    worker, assignment = await _running(client)
    await worker.report(assignment, result=b"fine")
    before = await _job(client, assignment.job_id)
    assert before.status == cpb.JOB_STATUS_DONE
    await _fails(
        client.jobs.CancelJob(jpb.CancelJobRequest(job_id=assignment.job_id), timeout=5),
        PRECONDITION,
    )
    assert await _job(client, assignment.job_id) == before
    await worker.close()


async def test_cancel_an_unknown_job_is_not_found(client: Client) -> None:
    request = jpb.CancelJobRequest(job_id=UNKNOWN_ID)
    await _fails(client.jobs.CancelJob(request, timeout=5), NOT_FOUND)


async def test_cancel_with_a_malformed_id_is_invalid(client: Client) -> None:
    request = jpb.CancelJobRequest(job_id="not-a-uuid")
    await _fails(client.jobs.CancelJob(request, timeout=5), INVALID)


# --- GetJobStatus ----------------------------------------------------------------------------


async def test_get_job_status_returns_the_job(client: Client) -> None:
    job_id = await _submit(client, payload=job_payload(b"p"), priority=3)
    job = await _job(client, job_id)
    assert (job.job_id, job.payload, job.priority) == (job_id, job_payload("p"), 3)


async def test_get_job_status_of_an_unknown_job_is_not_found(client: Client) -> None:
    request = jpb.GetJobStatusRequest(job_id=UNKNOWN_ID)
    details = await _fails(client.jobs.GetJobStatus(request, timeout=5), NOT_FOUND)
    assert UNKNOWN_ID in details


@pytest.mark.parametrize("bad_id", ["", "123", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"])
async def test_get_job_status_with_a_malformed_id_is_invalid(client: Client, bad_id: str) -> None:
    request = jpb.GetJobStatusRequest(job_id=bad_id)
    await _fails(client.jobs.GetJobStatus(request, timeout=5), INVALID)


# --- ListJobs --------------------------------------------------------------------------------


async def test_list_jobs_is_newest_first(client: Client) -> None:
    ids = [await _submit(client, payload=job_payload(str(i).encode())) for i in range(4)]
    reply = await _list(client)
    assert [j.job_id for j in reply.jobs] == ids[::-1]
    assert reply.next_page_token == ""


async def test_list_jobs_filters_by_queue(client: Client) -> None:
    await client.admin.CreateQueue(apb.CreateQueueRequest(name="mail"), timeout=5)
    mail = {await _submit(client, queue_name="mail") for _ in range(2)}
    await _submit(client)
    reply = await _list(client, queue_name="mail")
    assert {j.job_id for j in reply.jobs} == mail
    assert all(j.queue_name == "mail" for j in reply.jobs)


async def test_list_jobs_filters_by_status(client: Client) -> None:
    ids = [await _submit(client) for _ in range(3)]
    await _cancel(client, ids[1])
    dead = await _list(client, status=cpb.JOB_STATUS_DEAD_LETTERED)
    assert [j.job_id for j in dead.jobs] == [ids[1]]
    pending = await _list(client, status=cpb.JOB_STATUS_PENDING)
    assert [j.job_id for j in pending.jobs] == [ids[2], ids[0]]


async def test_list_jobs_filters_by_queue_and_status_together(client: Client) -> None:
    await client.admin.CreateQueue(apb.CreateQueueRequest(name="mail"), timeout=5)
    mail = [await _submit(client, queue_name="mail") for _ in range(2)]
    await _cancel(client, await _submit(client))  # dead-lettered, other queue
    await _cancel(client, mail[0])
    reply = await _list(client, queue_name="mail", status=cpb.JOB_STATUS_DEAD_LETTERED)
    assert [j.job_id for j in reply.jobs] == [mail[0]]


async def test_list_jobs_pages_through_everything_without_gaps_or_duplicates(
    client: Client,
) -> None:
    ids = await _submit_many(client, 25) + await _submit_many(client, 20)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        reply = await _list(client, limit=20, page_token=token)
        assert len(reply.jobs) <= 20
        seen.extend(j.job_id for j in reply.jobs)
        pages += 1
        token = reply.next_page_token
        if not token:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 45
    assert set(seen) == set(ids)
    everything = await _list(client, limit=100)
    assert seen == [j.job_id for j in everything.jobs]  # the same order as one big page


async def test_list_jobs_pages_keep_their_filters(client: Client) -> None:
    await client.admin.CreateQueue(apb.CreateQueueRequest(name="mail"), timeout=5)
    mail = await _submit_many(client, 5, queue_name="mail")
    await _submit_many(client, 5)
    first = await _list(client, queue_name="mail", limit=3)
    second = await _list(client, queue_name="mail", limit=3, page_token=first.next_page_token)
    assert second.next_page_token == ""
    assert {j.job_id for j in [*first.jobs, *second.jobs]} == set(mail)


async def test_list_jobs_with_limit_zero_returns_twenty(client: Client) -> None:
    await _submit_many(client, 25)
    reply = await _list(client, limit=0)
    assert len(reply.jobs) == 20
    assert reply.next_page_token


async def test_list_jobs_caps_the_limit_at_one_hundred(client: Client) -> None:
    await _submit_many(client, 105)
    reply = await _list(client, limit=1000)
    assert len(reply.jobs) == 100
    rest = await _list(client, limit=1000, page_token=reply.next_page_token)
    assert len(rest.jobs) == 5
    assert rest.next_page_token == ""


async def test_list_jobs_with_a_negative_limit_is_invalid(client: Client) -> None:
    await _fails(client.jobs.ListJobs(jpb.ListJobsRequest(limit=-1), timeout=5), INVALID)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("not a token!", id="garbage"),
        pytest.param(_b64(b"hello"), id="not-json"),
        pytest.param(_b64(b'{"c": "yesterday", "j": "x"}'), id="bad-fields"),
        pytest.param(
            _b64(b'{"c": "2024-01-01T00:00:00", "j": "' + UNKNOWN_ID.encode() + b'"}'),
            id="naive-time",
        ),
        pytest.param("A" * 300, id="too-long"),
    ],
)
async def test_list_jobs_with_a_forged_page_token_is_invalid(client: Client, token: str) -> None:
    await _submit(client)
    request = jpb.ListJobsRequest(page_token=token)
    await _fails(client.jobs.ListJobs(request, timeout=5), INVALID)


# --- GetJobLogs ------------------------------------------------------------------------------


async def test_get_job_logs_lists_a_full_run_in_order(client: Client) -> None:
    worker, assignment = await _running(client)
    await worker.report(assignment, result=b"fine")
    events = await _events(client, assignment.job_id)
    assert [(e.from_status, e.to_status, e.reason) for e in events] == [
        (cpb.JOB_STATUS_UNSPECIFIED, cpb.JOB_STATUS_PENDING, "SUBMITTED"),
        (cpb.JOB_STATUS_PENDING, cpb.JOB_STATUS_ASSIGNED, "ASSIGNED"),
        (cpb.JOB_STATUS_ASSIGNED, cpb.JOB_STATUS_RUNNING, "STARTED"),
        (cpb.JOB_STATUS_RUNNING, cpb.JOB_STATUS_DONE, "COMPLETED"),
    ]
    assert [e.worker_id for e in events] == ["", *[worker.worker_id] * 3]
    assert all(e.job_id == assignment.job_id and e.queue_name == "default" for e in events)
    assert [e.id for e in events] == sorted(e.id for e in events)
    times = [_at(e.occurred_at) for e in events]
    assert times == sorted(times)
    await worker.close()


async def test_get_job_logs_of_an_unknown_job_is_not_found(client: Client) -> None:
    request = jpb.GetJobLogsRequest(job_id=UNKNOWN_ID)
    await _fails(client.jobs.GetJobLogs(request, timeout=5), NOT_FOUND)


async def test_get_job_logs_with_a_malformed_id_is_invalid(client: Client) -> None:
    request = jpb.GetJobLogsRequest(job_id="nope")
    await _fails(client.jobs.GetJobLogs(request, timeout=5), INVALID)


# --- RetryJob --------------------------------------------------------------------------------


async def test_retry_a_cancelled_job_makes_it_pending_again(client: Client) -> None:
    job_id = await _submit(client)
    await _cancel(client, job_id)
    retried = (await client.jobs.RetryJob(jpb.RetryJobRequest(job_id=job_id), timeout=5)).job
    assert retried.status == cpb.JOB_STATUS_PENDING
    assert retried.retry_count == 0
    assert not retried.HasField("completed_at")
    assert retried.HasField("not_before")
    assert _at(retried.not_before) <= _at(retried.updated_at)  # runnable now
    assert (await _job(client, job_id)).status == cpb.JOB_STATUS_PENDING
    last = (await _events(client, job_id))[-1]
    assert (last.from_status, last.to_status, last.reason) == (
        cpb.JOB_STATUS_DEAD_LETTERED,
        cpb.JOB_STATUS_PENDING,
        "MANUAL_RETRY",
    )


async def test_a_retried_job_runs_again(client: Client) -> None:
    job_id = await _submit(client)
    await _cancel(client, job_id)
    await client.jobs.RetryJob(jpb.RetryJobRequest(job_id=job_id), timeout=5)
    worker = await ProtocolWorker(client).start()
    [assignment] = await worker.take(1, within=5)
    assert assignment.job_id == job_id
    await worker.close()


async def test_retry_a_pending_job_fails_and_changes_nothing(client: Client) -> None:
    job_id = await _submit(client)
    before = await _job(client, job_id)
    details = await _fails(
        client.jobs.RetryJob(jpb.RetryJobRequest(job_id=job_id), timeout=5), PRECONDITION
    )
    assert "PENDING" in details
    assert await _job(client, job_id) == before
    assert len(await _events(client, job_id)) == 1


async def test_retry_a_done_job_fails(client: Client) -> None:
    worker, assignment = await _running(client)
    await worker.report(assignment)
    request = jpb.RetryJobRequest(job_id=assignment.job_id)
    await _fails(client.jobs.RetryJob(request, timeout=5), PRECONDITION)
    assert (await _job(client, assignment.job_id)).status == cpb.JOB_STATUS_DONE
    await worker.close()


async def test_retry_an_unknown_job_is_not_found(client: Client) -> None:
    request = jpb.RetryJobRequest(job_id=UNKNOWN_ID)
    await _fails(client.jobs.RetryJob(request, timeout=5), NOT_FOUND)


async def test_retry_with_a_malformed_id_is_invalid(client: Client) -> None:
    request = jpb.RetryJobRequest(job_id="12345")
    await _fails(client.jobs.RetryJob(request, timeout=5), INVALID)


# --- what every RPC does ---------------------------------------------------------------------


async def test_a_correlation_id_sent_comes_back_in_the_trailing_metadata(client: Client) -> None:
    call = client.jobs.SubmitJob(
        jpb.SubmitJobRequest(queue_name="default", payload=job_payload()),
        metadata=(("x-correlation-id", "req-42.a"),),
        timeout=5,
    )
    await call
    assert ("x-correlation-id", "req-42.a") in tuple(await call.trailing_metadata())


async def test_a_failed_call_also_returns_the_correlation_id(client: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.jobs.GetJobStatus(
            jpb.GetJobStatusRequest(job_id=UNKNOWN_ID),
            metadata=(("x-correlation-id", "trace-7"),),
            timeout=5,
        )
    assert caught.value.code() is NOT_FOUND
    assert ("x-correlation-id", "trace-7") in tuple(caught.value.trailing_metadata() or ())


async def test_a_call_without_a_correlation_id_gets_a_fresh_one(client: Client) -> None:
    call = client.jobs.ListJobs(jpb.ListJobsRequest(), timeout=5)
    await call
    ids = [v for k, v in tuple(await call.trailing_metadata()) if k == "x-correlation-id"]
    assert len(ids) == 1
    assert ids[0]


async def test_error_details_are_human_messages_without_stack_traces(client: Client) -> None:
    calls: list[Awaitable[Any]] = [
        client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id="x"), timeout=5),
        client.jobs.SubmitJob(jpb.SubmitJobRequest(queue_name="missing"), timeout=5),
        client.jobs.ListJobs(jpb.ListJobsRequest(page_token="?"), timeout=5),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        details = caught.value.details() or ""
        assert details
        assert "Traceback" not in details
        assert 'File "' not in details
        assert "\n" not in details
