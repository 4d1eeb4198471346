"""WorkerService over real gRPC against a real database: registration, heartbeats, the
assignment stream, acknowledgements, reports and deregistration, each success path and each
error its proto documents (SPEC §4, §5). Fencing: a report for an attempt that is not current
is rejected and changes nothing; an exact duplicate succeeds and changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from support.payloads import job_payload
from support.protocol_worker import ProtocolWorker, attempt_of
from support.server_harness import Client, running_server

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import worker_service_pb2 as wpb
from jobq.server import worker_capacity
from jobq.server.worker_service import MAX_RUNNING_LISTED

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
SOME_INCARNATION = "00000000-0000-4000-8000-0000000000aa"
# Retries due at once, so a failed job comes straight back to a worker.
NO_BACKOFF = {"scheduler.retry_base_delay_s": 0, "scheduler.retry_max_delay_s": 0}


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


async def _first_message(call: grpc.aio.UnaryStreamCall[Any, Any]) -> object:
    async for message in call:
        return message
    return None


async def _submit(client: Client, **fields: Any) -> str:
    fields.setdefault("queue_name", "default")
    fields["payload"] = job_payload(fields.get("payload"))
    reply = await client.jobs.SubmitJob(jpb.SubmitJobRequest(**fields), timeout=5)
    return reply.job_id


async def _job(client: Client, job_id: str) -> cpb.Job:
    return (await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=5)).job


async def _events(client: Client, job_id: str) -> list[cpb.JobEvent]:
    reply = await client.jobs.GetJobLogs(jpb.GetJobLogsRequest(job_id=job_id), timeout=5)
    return list(reply.events)


async def _reasons(client: Client, job_id: str) -> list[str]:
    return [e.reason for e in await _events(client, job_id)]


async def _workers(client: Client, status: int = 0) -> list[cpb.Worker]:
    reply = await client.admin.ListWorkers(apb.ListWorkersRequest(status=status), timeout=5)  # type: ignore[arg-type]
    return list(reply.workers)


async def _register(client: Client, **fields: Any) -> wpb.RegisterWorkerResponse:
    request = wpb.RegisterWorkerRequest(
        **{"hostname": "host-a", "concurrency": 2, "queues": ["default"], **fields}
    )
    return await client.workers.RegisterWorker(request, timeout=5)


async def _deregister(client: Client, registered: wpb.RegisterWorkerResponse) -> None:
    request = wpb.DeregisterRequest(
        worker_id=registered.worker_id, incarnation=registered.incarnation
    )
    await client.workers.Deregister(request, timeout=5)


def _at(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def _result(
    worker: ProtocolWorker | wpb.RegisterWorkerResponse | str,
    assignment: wpb.JobAssignment,
    outcome: int = wpb.JOB_OUTCOME_SUCCEEDED,
    **fields: Any,
) -> wpb.ReportResultRequest:
    """A report of `assignment` (with its claim id) by `worker` (with its incarnation)."""
    if isinstance(worker, str):
        worker_id, incarnation = worker, ""
    else:
        worker_id, incarnation = worker.worker_id, worker.incarnation
    fields.setdefault("claim_id", assignment.claim_id)
    fields.setdefault("incarnation", incarnation)
    return wpb.ReportResultRequest(
        worker_id=worker_id,
        job_id=assignment.job_id,
        attempt=assignment.attempt,
        outcome=outcome,  # type: ignore[arg-type]
        **fields,
    )


async def _running(
    client: Client, n: int = 1, queue: str = "default", **submit: Any
) -> tuple[ProtocolWorker, list[wpb.JobAssignment]]:
    """A worker holding `n` fresh jobs of `queue`, all acknowledged (RUNNING)."""
    worker = await ProtocolWorker(client, queues=(queue,), concurrency=n).start()
    for i in range(n):
        await _submit(client, queue_name=queue, payload=str(i).encode(), **submit)
    assignments = await worker.take(n, within=5)
    await worker.ack(assignments)
    return worker, assignments


# --- RegisterWorker --------------------------------------------------------------------------


async def test_register_generates_a_worker_id_when_none_is_given(client: Client) -> None:
    reply = await _register(client, concurrency=3, queues=["default"])
    assert uuid.UUID(reply.worker_id)
    assert reply.heartbeat_interval_s > 0
    [worker] = await _workers(client)
    assert worker.worker_id == reply.worker_id
    assert worker.status == cpb.WORKER_STATUS_ONLINE
    assert (worker.hostname, worker.concurrency, list(worker.queues)) == ("host-a", 3, ["default"])
    assert worker.HasField("last_heartbeat")


async def test_register_keeps_a_given_worker_id(client: Client) -> None:
    given = str(uuid.uuid4())
    assert (await _register(client, worker_id=given)).worker_id == given
    assert [w.worker_id for w in await _workers(client)] == [given]


async def test_register_again_updates_the_same_worker(client: Client) -> None:
    await client.admin.CreateQueue(apb.CreateQueueRequest(name="mail"), timeout=5)
    given = str(uuid.uuid4())
    await _register(client, worker_id=given, concurrency=2, queues=["default"])
    await _register(
        client, worker_id=given, hostname="host-b", concurrency=5, queues=["default", "mail"]
    )
    [worker] = await _workers(client)
    assert worker.worker_id == given
    assert (worker.hostname, worker.concurrency) == ("host-b", 5)
    assert list(worker.queues) == ["default", "mail"]
    assert worker.status == cpb.WORKER_STATUS_ONLINE


async def test_register_again_after_deregister_brings_the_worker_back_online(
    client: Client,
) -> None:
    registered = await _register(client)
    await _deregister(client, registered)
    assert (await _workers(client))[0].status == cpb.WORKER_STATUS_OFFLINE
    again = await _register(
        client, worker_id=registered.worker_id, incarnation=registered.incarnation
    )
    assert again.incarnation == registered.incarnation  # the same process, back
    assert (await _workers(client))[0].status == cpb.WORKER_STATUS_ONLINE
    heartbeat = wpb.HeartbeatRequest(
        worker_id=registered.worker_id, incarnation=registered.incarnation
    )
    await client.workers.Heartbeat(heartbeat, timeout=5)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"concurrency": 0}, id="concurrency-0"),
        pytest.param({"concurrency": -1}, id="concurrency-negative"),
        pytest.param({"queues": []}, id="no-queues"),
        pytest.param({"queues": ["default", "a b"]}, id="bad-queue-name"),
        pytest.param({"queues": ["q" * 129]}, id="queue-name-129"),
        pytest.param({"worker_id": "worker-1"}, id="malformed-id"),
        pytest.param({"incarnation": "process-1"}, id="malformed-incarnation"),
    ],
)
async def test_register_rejects_bad_input_and_writes_nothing(
    client: Client, fields: dict[str, Any]
) -> None:
    await _fails(_register(client, **fields), INVALID)
    assert await _workers(client) == []


# --- Heartbeat -------------------------------------------------------------------------------


async def test_heartbeat_of_a_known_worker_records_it(client: Client) -> None:
    registered = await _register(client)
    [before] = await _workers(client)
    request = wpb.HeartbeatRequest(
        worker_id=registered.worker_id, incarnation=registered.incarnation, active_job_count=2
    )
    reply = await client.workers.Heartbeat(request, timeout=5)
    assert list(reply.commands) == []
    [after] = await _workers(client)
    assert after.active_job_count == 2
    assert _at(after.last_heartbeat) >= _at(before.last_heartbeat)
    assert after.status == cpb.WORKER_STATUS_ONLINE


async def test_heartbeat_of_an_unknown_worker_is_not_found(client: Client) -> None:
    request = wpb.HeartbeatRequest(worker_id=UNKNOWN_ID, incarnation=SOME_INCARNATION)
    await _fails(client.workers.Heartbeat(request, timeout=5), NOT_FOUND)


async def test_heartbeat_after_deregister_is_not_found(client: Client) -> None:
    registered = await _register(client)
    await _deregister(client, registered)
    request = wpb.HeartbeatRequest(
        worker_id=registered.worker_id, incarnation=registered.incarnation
    )
    await _fails(client.workers.Heartbeat(request, timeout=5), NOT_FOUND)
    assert (await _workers(client))[0].status == cpb.WORKER_STATUS_OFFLINE  # not revived


@pytest.mark.parametrize(
    ("running", "message"),
    [
        ([wpb.JobAttempt(job_id="not-a-uuid", attempt=1)], "job id"),
        (
            [wpb.JobAttempt(job_id=UNKNOWN_ID, attempt=1)] * (MAX_RUNNING_LISTED + 1),
            f"at most {MAX_RUNNING_LISTED} running jobs",
        ),
    ],
)
async def test_a_heartbeat_listing_bad_or_too_many_jobs_is_refused_and_records_nothing(
    client: Client, running: list[wpb.JobAttempt], message: str
) -> None:
    registered = await _register(client)
    [before] = await _workers(client)
    request = wpb.HeartbeatRequest(
        worker_id=registered.worker_id,
        incarnation=registered.incarnation,
        active_job_count=5,
        running=running,
    )
    assert message in await _fails(client.workers.Heartbeat(request, timeout=5), INVALID)
    [after] = await _workers(client)
    assert (after.active_job_count, after.last_heartbeat) == (0, before.last_heartbeat)


# --- StreamJobs ------------------------------------------------------------------------------


async def test_stream_jobs_delivers_assignments_for_this_worker(client: Client) -> None:
    await client.admin.CreateQueue(apb.CreateQueueRequest(name="mail", max_retries=4), timeout=5)
    worker = await ProtocolWorker(client, queues=("mail",)).start()
    job_id = await _submit(client, queue_name="mail", payload=b"hello", priority=6)
    [assignment] = await worker.take(1, within=5)
    assert assignment.job_id == job_id
    assert (assignment.queue_name, assignment.payload, assignment.priority) == (
        "mail",
        job_payload(b"hello"),
        6,
    )
    assert (assignment.attempt, assignment.worker_id) == (1, worker.worker_id)
    assert uuid.UUID(assignment.claim_id)
    assert (assignment.retry_count, assignment.max_retries) == (0, 4)
    assert assignment.HasField("created_at")
    job = await _job(client, job_id)
    assert (job.status, job.worker_id, job.attempt) == (
        cpb.JOB_STATUS_ASSIGNED,
        worker.worker_id,
        1,
    )
    await worker.close()


async def test_stream_jobs_of_an_unknown_worker_is_not_found(client: Client) -> None:
    request = wpb.StreamJobsRequest(worker_id=UNKNOWN_ID, incarnation=SOME_INCARNATION)
    call = client.workers.StreamJobs(request, timeout=5)
    await _fails(_first_message(call), NOT_FOUND)


async def test_stream_jobs_of_an_offline_worker_fails(client: Client) -> None:
    registered = await _register(client)
    await _deregister(client, registered)
    await _submit(client)
    request = wpb.StreamJobsRequest(
        worker_id=registered.worker_id, incarnation=registered.incarnation
    )
    call = client.workers.StreamJobs(request, timeout=5)
    details = await _fails(_first_message(call), PRECONDITION)
    assert "OFFLINE" in details


async def test_stream_jobs_with_a_malformed_worker_id_is_invalid(client: Client) -> None:
    call = client.workers.StreamJobs(wpb.StreamJobsRequest(worker_id="w1"), timeout=5)
    await _fails(_first_message(call), INVALID)


# --- AckJobs ---------------------------------------------------------------------------------


async def test_ack_moves_an_assigned_job_to_running(client: Client) -> None:
    worker = await ProtocolWorker(client).start()
    job_id = await _submit(client)
    [assignment] = await worker.take(1, within=5)
    reply = await worker.ack([assignment])
    [outcome] = reply.outcomes
    assert (outcome.job_id, outcome.attempt, outcome.accepted) == (job_id, 1, True)
    job = await _job(client, job_id)
    assert job.status == cpb.JOB_STATUS_RUNNING
    assert job.HasField("started_at")
    last = (await _events(client, job_id))[-1]
    assert (last.from_status, last.to_status, last.reason, last.worker_id) == (
        cpb.JOB_STATUS_ASSIGNED,
        cpb.JOB_STATUS_RUNNING,
        "STARTED",
        worker.worker_id,
    )
    await worker.close()


async def test_a_duplicate_ack_is_accepted_and_changes_nothing(client: Client) -> None:
    worker, [assignment] = await _running(client)
    before = await _job(client, assignment.job_id)
    [outcome] = (await worker.ack([assignment])).outcomes
    assert outcome.accepted
    assert await _job(client, assignment.job_id) == before
    assert (await _reasons(client, assignment.job_id)).count("STARTED") == 1
    await worker.close()


async def test_an_ack_of_a_cancelled_assignment_is_rejected_and_changes_nothing(
    client: Client,
) -> None:
    worker = await ProtocolWorker(client).start()
    job_id = await _submit(client)
    [assignment] = await worker.take(1, within=5)
    await client.jobs.CancelJob(jpb.CancelJobRequest(job_id=job_id), timeout=5)
    before = await _job(client, job_id)
    [outcome] = (await worker.ack([assignment])).outcomes
    assert not outcome.accepted
    assert outcome.message
    assert await _job(client, job_id) == before
    assert before.status == cpb.JOB_STATUS_DEAD_LETTERED
    await worker.close()


async def test_ack_outcomes_come_back_in_request_order(client: Client) -> None:
    worker = await ProtocolWorker(client, concurrency=2).start()
    await _submit(client)
    await _submit(client)
    first, second = await worker.take(2, within=5)
    wrong_attempt = wpb.JobAssignment(
        job_id=first.job_id, attempt=first.attempt + 5, claim_id=first.claim_id
    )
    reply = await worker.ack([second, wrong_attempt, first])
    assert [(o.job_id, o.attempt, o.accepted) for o in reply.outcomes] == [
        (second.job_id, second.attempt, True),
        (first.job_id, first.attempt + 5, False),
        (first.job_id, first.attempt, True),
    ]
    await worker.close()


async def test_an_ack_for_a_job_another_worker_holds_is_rejected(client: Client) -> None:
    holder = await ProtocolWorker(client).start()
    await _submit(client)
    [assignment] = await holder.take(1, within=5)
    other = ProtocolWorker(client)
    await other.register()  # no stream: it receives nothing
    [outcome] = (await other.ack([assignment])).outcomes
    assert not outcome.accepted
    assert (await _job(client, assignment.job_id)).status == cpb.JOB_STATUS_ASSIGNED
    await holder.close()


async def test_ack_from_an_unknown_worker_is_not_found(client: Client) -> None:
    request = wpb.AckJobsRequest(
        worker_id=UNKNOWN_ID,
        incarnation=SOME_INCARNATION,
        jobs=[wpb.JobAttempt(job_id=UNKNOWN_ID, attempt=1)],
    )
    await _fails(client.workers.AckJobs(request, timeout=5), NOT_FOUND)


async def test_a_repeated_ack_of_a_superseded_attempt_is_rejected(client: Client) -> None:
    old, [assignment] = await _running(client)
    await old.deregister()  # released: PENDING, no retry used
    await old.close()
    new = await ProtocolWorker(client).start()
    [again] = await new.take(1, within=5)
    assert (again.job_id, again.attempt) == (assignment.job_id, 2)
    [outcome] = (await old.ack([assignment])).outcomes  # the old worker's retried ack
    assert not outcome.accepted  # it must not go on running a job that is someone else's
    await new.close()


# --- ReportResult ----------------------------------------------------------------------------


async def test_a_success_report_finishes_the_job_with_its_result(client: Client) -> None:
    worker, [assignment] = await _running(client)
    await worker.report(assignment, result=b'{"sent": true}')
    job = await _job(client, assignment.job_id)
    assert job.status == cpb.JOB_STATUS_DONE
    assert job.result == b'{"sent": true}'
    assert job.error_message == ""
    assert job.HasField("completed_at")
    assert (await _reasons(client, assignment.job_id))[-1] == "COMPLETED"
    await worker.close()


async def test_a_failure_report_schedules_a_retry_with_backoff(client: Client) -> None:
    worker, [assignment] = await _running(client)
    await worker.report(assignment, wpb.JOB_OUTCOME_FAILED, error="smtp timeout")
    job = await _job(client, assignment.job_id)
    assert job.status == cpb.JOB_STATUS_PENDING
    assert job.retry_count == 1
    assert job.error_message == "smtp timeout"
    assert _at(job.not_before) > datetime.now(UTC) + timedelta(seconds=3)  # default backoff
    events = await _events(client, assignment.job_id)
    failed, retry = events[-2:]
    assert (failed.from_status, failed.to_status, failed.reason, failed.detail) == (
        cpb.JOB_STATUS_RUNNING,
        cpb.JOB_STATUS_FAILED,
        "FAILED",
        "smtp timeout",
    )
    assert (retry.from_status, retry.to_status, retry.reason) == (
        cpb.JOB_STATUS_FAILED,
        cpb.JOB_STATUS_PENDING,
        "RETRY",
    )
    assert await worker.nothing_more(0.3)  # not due yet
    await worker.close()


async def test_failures_beyond_max_retries_dead_letter_the_job(db_dsn: str) -> None:
    async with running_server(db_dsn, NO_BACKOFF) as (_, client):
        await client.admin.CreateQueue(
            apb.CreateQueueRequest(name="fragile", max_retries=1), timeout=5
        )
        worker, [first] = await _running(client, queue="fragile")
        await worker.report(first, wpb.JOB_OUTCOME_FAILED, error="boom 1")
        [second] = await worker.take(1, within=5)  # retried at once
        assert (second.job_id, second.attempt, second.retry_count) == (first.job_id, 2, 1)
        await worker.ack([second])
        await worker.report(second, wpb.JOB_OUTCOME_FAILED, error="boom 2")
        job = await _job(client, first.job_id)
        assert job.status == cpb.JOB_STATUS_DEAD_LETTERED
        assert (job.retry_count, job.error_message) == (1, "boom 2")
        assert job.HasField("completed_at")
        assert (await _reasons(client, first.job_id))[-2:] == ["FAILED", "RETRIES_EXHAUSTED"]
        assert await worker.nothing_more(0.3)
        await worker.close()


async def test_a_failure_with_max_retries_zero_dead_letters_at_once(db_dsn: str) -> None:
    async with running_server(db_dsn, NO_BACKOFF) as (_, client):
        worker, [assignment] = await _running(client, max_retries=0)
        await worker.report(assignment, wpb.JOB_OUTCOME_FAILED, error="no")
        job = await _job(client, assignment.job_id)
        assert (job.status, job.retry_count) == (cpb.JOB_STATUS_DEAD_LETTERED, 0)
        await worker.close()


async def test_a_shutdown_report_gives_the_job_back_without_using_a_retry(
    client: Client,
) -> None:
    worker, [assignment] = await _running(client)
    await worker.report(assignment, wpb.JOB_OUTCOME_SHUTDOWN)
    # Back to PENDING at once, so the freed slot brings it straight back as a new attempt.
    [again] = await worker.take(1, within=5)
    assert (again.job_id, again.attempt, again.retry_count) == (assignment.job_id, 2, 0)
    events = await _events(client, assignment.job_id)
    shutdown = next(e for e in events if e.reason == "WORKER_SHUTDOWN")
    assert (shutdown.from_status, shutdown.to_status, shutdown.worker_id) == (
        cpb.JOB_STATUS_RUNNING,
        cpb.JOB_STATUS_PENDING,
        worker.worker_id,
    )
    assert "FAILED" not in [e.reason for e in events]
    assert (await _job(client, assignment.job_id)).retry_count == 0
    await worker.close()


async def test_a_duplicate_success_report_succeeds_and_changes_nothing(client: Client) -> None:
    worker, [assignment] = await _running(client)
    await worker.report(assignment, result=b"r")
    before = await _job(client, assignment.job_id)
    events = await _events(client, assignment.job_id)
    await worker.report(assignment, result=b"r")
    assert await _job(client, assignment.job_id) == before
    assert await _events(client, assignment.job_id) == events
    await worker.close()


async def test_a_duplicate_failure_report_succeeds_and_changes_nothing(client: Client) -> None:
    worker, [assignment] = await _running(client)
    await worker.report(assignment, wpb.JOB_OUTCOME_FAILED, error="e")
    before = await _job(client, assignment.job_id)
    events = await _events(client, assignment.job_id)
    await worker.report(assignment, wpb.JOB_OUTCOME_FAILED, error="e")
    assert await _job(client, assignment.job_id) == before
    assert before.retry_count == 1  # not retried twice
    assert await _events(client, assignment.job_id) == events
    await worker.close()


async def test_a_duplicate_shutdown_report_succeeds(client: Client) -> None:
    worker, [assignment] = await _running(client)
    await worker.report(assignment, wpb.JOB_OUTCOME_SHUTDOWN)
    assert "WORKER_SHUTDOWN" in await _reasons(client, assignment.job_id)
    await worker.report(assignment, wpb.JOB_OUTCOME_SHUTDOWN)  # e.g. resent after a timeout
    await worker.close()


async def test_a_report_for_a_superseded_attempt_is_rejected_and_changes_nothing(
    client: Client,
) -> None:
    old, [assignment] = await _running(client)
    await old.deregister()
    await old.close()
    new = await ProtocolWorker(client).start()
    [again] = await new.take(1, within=5)
    assert (again.job_id, again.attempt) == (assignment.job_id, 2)
    before = await _job(client, assignment.job_id)
    events = await _events(client, assignment.job_id)
    details = await _fails(old.report(assignment, result=b"late"), PRECONDITION)
    assert "no longer current" in details
    assert await _job(client, assignment.job_id) == before
    assert await _events(client, assignment.job_id) == events
    assert before.status == cpb.JOB_STATUS_ASSIGNED
    assert before.worker_id == new.worker_id
    await new.close()


async def test_a_report_from_another_worker_is_rejected_and_changes_nothing(
    client: Client,
) -> None:
    holder, [assignment] = await _running(client)
    intruder = await _register(client)
    before = await _job(client, assignment.job_id)
    for outcome in (wpb.JOB_OUTCOME_SUCCEEDED, wpb.JOB_OUTCOME_FAILED, wpb.JOB_OUTCOME_SHUTDOWN):
        request = _result(intruder, assignment, outcome, result=b"mine")
        await _fails(client.workers.ReportResult(request, timeout=5), PRECONDITION)
    assert await _job(client, assignment.job_id) == before
    assert before.status == cpb.JOB_STATUS_RUNNING
    await holder.close()


async def test_a_report_with_an_unspecified_outcome_is_invalid(client: Client) -> None:
    worker, [assignment] = await _running(client)
    before = await _job(client, assignment.job_id)
    request = _result(worker, assignment, wpb.JOB_OUTCOME_UNSPECIFIED)
    await _fails(client.workers.ReportResult(request, timeout=5), INVALID)
    assert await _job(client, assignment.job_id) == before
    await worker.close()


async def test_a_report_for_an_unknown_job_is_not_found(client: Client) -> None:
    registered = await _register(client)
    request = wpb.ReportResultRequest(
        worker_id=registered.worker_id,
        incarnation=registered.incarnation,
        job_id=UNKNOWN_ID,
        attempt=1,
        outcome=wpb.JOB_OUTCOME_SUCCEEDED,
    )
    await _fails(client.workers.ReportResult(request, timeout=5), NOT_FOUND)


# --- ReportResults ---------------------------------------------------------------------------


async def test_report_results_judges_each_item_alone(client: Client) -> None:
    worker, [a, b, c] = await _running(client, 3)
    request = wpb.ReportResultsRequest(
        worker_id=worker.worker_id,
        incarnation=worker.incarnation,
        results=[
            _result(worker, a, result=b"a"),
            wpb.ReportResultRequest(
                job_id=b.job_id,
                attempt=b.attempt + 1,
                claim_id=b.claim_id,
                outcome=wpb.JOB_OUTCOME_SUCCEEDED,
            ),
            _result(worker, c, wpb.JOB_OUTCOME_FAILED, error_message="c broke"),
        ],
    )
    reply = await client.workers.ReportResults(request, timeout=5)
    assert [(o.job_id, o.attempt, o.accepted) for o in reply.outcomes] == [
        (a.job_id, a.attempt, True),
        (b.job_id, b.attempt + 1, False),
        (c.job_id, c.attempt, True),
    ]
    assert reply.outcomes[1].message
    job_a, job_b, job_c = [await _job(client, x.job_id) for x in (a, b, c)]
    assert (job_a.status, job_a.result) == (cpb.JOB_STATUS_DONE, b"a")
    assert job_b.status == cpb.JOB_STATUS_RUNNING
    assert (job_c.status, job_c.retry_count, job_c.error_message) == (
        cpb.JOB_STATUS_PENDING,
        1,
        "c broke",
    )
    await worker.close()


async def test_report_results_with_an_item_of_another_worker_is_invalid(client: Client) -> None:
    worker, [a, b] = await _running(client, 2)
    other = str(uuid.uuid4())
    request = wpb.ReportResultsRequest(
        worker_id=worker.worker_id,
        incarnation=worker.incarnation,
        results=[_result(worker, a), _result(other, b)],
    )
    details = await _fails(client.workers.ReportResults(request, timeout=5), INVALID)
    assert "result 1" in details
    for assignment in (a, b):  # not even the good item was applied
        assert (await _job(client, assignment.job_id)).status == cpb.JOB_STATUS_RUNNING
    await worker.close()


async def test_report_results_from_an_unknown_worker_is_not_found(client: Client) -> None:
    request = wpb.ReportResultsRequest(
        worker_id=UNKNOWN_ID,
        incarnation=SOME_INCARNATION,
        results=[
            wpb.ReportResultRequest(job_id=UNKNOWN_ID, attempt=1, outcome=wpb.JOB_OUTCOME_SUCCEEDED)
        ],
    )
    await _fails(client.workers.ReportResults(request, timeout=5), NOT_FOUND)


# --- Deregister ------------------------------------------------------------------------------


async def test_deregister_releases_held_jobs_at_once_and_ends_the_stream(db_dsn: str) -> None:
    async with running_server(db_dsn, NO_BACKOFF) as (_, client):
        registered = await _register(client, concurrency=2)
        worker_id, incarnation = registered.worker_id, registered.incarnation
        stream = client.workers.StreamJobs(
            wpb.StreamJobsRequest(worker_id=worker_id, incarnation=incarnation)
        )

        async def receive() -> wpb.JobAssignment:
            message = await asyncio.wait_for(stream.read(), timeout=5)
            assert isinstance(message, wpb.JobAssignment)
            return message

        async def ack(a: wpb.JobAssignment) -> None:
            request = wpb.AckJobsRequest(
                worker_id=worker_id, incarnation=incarnation, jobs=[attempt_of(a)]
            )
            await client.workers.AckJobs(request, timeout=5)

        # Job A: one failure (retry_count 1), then running again as attempt 2.
        retried_id = await _submit(client, payload=b"a")
        first = await receive()
        await ack(first)
        failure = _result(registered, first, wpb.JOB_OUTCOME_FAILED, error_message="flaky")
        await client.workers.ReportResult(failure, timeout=5)
        second = await receive()
        assert (second.job_id, second.attempt, second.retry_count) == (retried_id, 2, 1)
        await ack(second)
        # Job B: assigned, not acknowledged.
        assigned_id = await _submit(client, payload=b"b")
        assert (await receive()).job_id == assigned_id

        await _deregister(client, registered)

        assert (await _workers(client))[0].status == cpb.WORKER_STATUS_OFFLINE
        for job_id, retry_count, held_as in (
            (retried_id, 1, cpb.JOB_STATUS_RUNNING),
            (assigned_id, 0, cpb.JOB_STATUS_ASSIGNED),
        ):
            job = await _job(client, job_id)
            assert (job.status, job.retry_count) == (cpb.JOB_STATUS_PENDING, retry_count)
            last = (await _events(client, job_id))[-1]
            assert (last.from_status, last.to_status, last.reason, last.worker_id) == (
                held_as,
                cpb.JOB_STATUS_PENDING,
                "WORKER_SHUTDOWN",
                worker_id,
            )
        assert await asyncio.wait_for(stream.read(), timeout=5) is grpc.aio.EOF
        assert await stream.code() is grpc.StatusCode.OK


async def test_deregister_of_an_unknown_worker_is_not_found(client: Client) -> None:
    request = wpb.DeregisterRequest(worker_id=UNKNOWN_ID, incarnation=SOME_INCARNATION)
    await _fails(client.workers.Deregister(request, timeout=5), NOT_FOUND)


async def test_register_tells_the_worker_the_heartbeat_timeout_itself(db_dsn: str) -> None:
    """Not a rounded interval the worker multiplies back: with a 2 s timeout the worker once
    believed 3 s and ran jobs on after the server had declared it lost."""
    settings = {"scheduler.worker_heartbeat_timeout_s": 2.0}
    async with running_server(db_dsn, settings) as (_, client):
        reply = await _register(client, concurrency=1, queues=["default"])
    assert reply.heartbeat_timeout_s == 2.0
    assert reply.heartbeat_interval_s == 1


async def test_a_claim_the_worker_does_not_hold_is_taken_back_after_the_grace(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An assignment written to a connection that was already dead never arrives, and nothing
    tells the server so. The worker's heartbeats list what it holds; a claim left out of them
    past the grace goes back to PENDING (DELIVERY_FAILED) at once, not after the assignment
    timeout. One the worker does list stays with it."""
    # No grace at all: how long it lasts is WorkerCapacity's, checked on a fake clock in
    # tests/unit/server/test_worker_capacity.py; here nothing needs to wait for it.
    monkeypatch.setattr(worker_capacity, "HEARTBEAT_GRACE_S", 0.0)
    async with running_server(db_dsn) as (_, client):
        worker = await ProtocolWorker(client, concurrency=2).start()
        lost_id = await _submit(client, payload=b"lost")
        kept_id = await _submit(client, payload=b"kept")
        assignments = {a.job_id: a for a in await worker.take(2, within=5)}
        kept = assignments[kept_id]
        heartbeat = wpb.HeartbeatRequest(
            worker_id=worker.worker_id,
            incarnation=worker.incarnation,
            running=[wpb.JobAttempt(job_id=kept.job_id, attempt=kept.attempt)],
        )
        await client.workers.Heartbeat(heartbeat, timeout=5)
        assert (await _reasons(client, lost_id))[:3] == ["SUBMITTED", "ASSIGNED", "DELIVERY_FAILED"]
        assert (await _job(client, kept_id)).status == cpb.JOB_STATUS_ASSIGNED
        assert "DELIVERY_FAILED" not in await _reasons(client, kept_id)
