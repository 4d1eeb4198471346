"""AdminService over real gRPC against a real database: queues, workers and system status, each
success path and each error its proto documents (SPEC §5)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import Any

import asyncpg
import grpc
import pytest
from support.payloads import job_payload
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, running_server

import jobq
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


async def _create(client: Client, name: str, **fields: Any) -> cpb.Queue:
    request = apb.CreateQueueRequest(name=name, **fields)
    return (await client.admin.CreateQueue(request, timeout=5)).queue


async def _queues(client: Client) -> dict[str, cpb.Queue]:
    reply = await client.admin.ListQueues(apb.ListQueuesRequest(), timeout=5)
    return {q.name: q for q in reply.queues}


async def _stats(client: Client, name: str) -> apb.QueueStats:
    reply = await client.admin.GetQueueStats(apb.GetQueueStatsRequest(name=name), timeout=5)
    return reply.stats


async def _submit(client: Client, **fields: Any) -> str:
    fields.setdefault("queue_name", "default")
    fields.setdefault("payload", job_payload())
    reply = await client.jobs.SubmitJob(jpb.SubmitJobRequest(**fields), timeout=5)
    return reply.job_id


async def _cancel(client: Client, job_id: str) -> None:
    await client.jobs.CancelJob(jpb.CancelJobRequest(job_id=job_id), timeout=5)


async def _workers(client: Client, status: int = 0) -> list[cpb.Worker]:
    reply = await client.admin.ListWorkers(apb.ListWorkersRequest(status=status), timeout=5)  # type: ignore[arg-type]
    return list(reply.workers)


_INCARNATIONS: dict[str, str] = {}
"""What RegisterWorker issued each worker these tests registered (Deregister presents it)."""


async def _register(
    client: Client, queues: tuple[str, ...] = ("default",), concurrency: int = 2
) -> str:
    request = wpb.RegisterWorkerRequest(hostname="h", concurrency=concurrency, queues=list(queues))
    reply = await client.workers.RegisterWorker(request, timeout=5)
    _INCARNATIONS[reply.worker_id] = reply.incarnation
    return reply.worker_id


async def _deregister(client: Client, worker_id: str) -> None:
    request = wpb.DeregisterRequest(worker_id=worker_id, incarnation=_INCARNATIONS[worker_id])
    await client.workers.Deregister(request, timeout=5)


async def _drain(client: Client, worker_id: str) -> cpb.Worker:
    request = apb.DrainWorkerRequest(worker_id=worker_id)
    return (await client.admin.DrainWorker(request, timeout=5)).worker


# --- CreateQueue -----------------------------------------------------------------------------


async def test_create_queue_returns_the_new_queue(client: Client) -> None:
    queue = await _create(client, "emails.v2", max_retries=7, ttl_seconds=600)
    assert (queue.name, queue.max_retries, queue.ttl_seconds) == ("emails.v2", 7, 600)
    assert queue.HasField("created_at")
    assert (await _queues(client))["emails.v2"] == queue


async def test_create_queue_defaults_to_three_retries_and_no_ttl(client: Client) -> None:
    queue = await _create(client, "plain")
    assert (queue.max_retries, queue.ttl_seconds, queue.max_interruptions) == (3, 0, 3)


async def test_create_queue_with_max_interruptions_shows_it_in_list_and_stats(
    client: Client,
) -> None:
    queue = await _create(client, "fragile", max_interruptions=1)
    assert queue.max_interruptions == 1
    assert (await _queues(client))["fragile"].max_interruptions == 1
    assert (await _queues(client))["default"].max_interruptions == 3
    stats = await _stats(client, "fragile")
    assert (stats.max_interruptions, stats.total_interruptions) == (1, 0)
    assert (await _create(client, "never", max_interruptions=0)).max_interruptions == 0


async def test_create_queue_with_max_retries_zero_keeps_zero(client: Client) -> None:
    assert (await _create(client, "once", max_retries=0)).max_retries == 0


async def test_create_queue_with_a_taken_name_already_exists(client: Client) -> None:
    await _create(client, "mail", max_retries=1)
    details = await _fails(
        client.admin.CreateQueue(apb.CreateQueueRequest(name="mail", max_retries=9), timeout=5),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert "mail" in details
    assert (await _queues(client))["mail"].max_retries == 1  # unchanged


async def test_create_queue_default_already_exists(client: Client) -> None:
    request = apb.CreateQueueRequest(name="default")
    await _fails(client.admin.CreateQueue(request, timeout=5), grpc.StatusCode.ALREADY_EXISTS)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"name": "a b"}, id="name-with-space"),
        pytest.param({"name": ""}, id="empty-name"),
        pytest.param({"name": "q" * 129}, id="name-129"),
        pytest.param({"name": "bad/name"}, id="name-with-slash"),
        pytest.param({"name": "ok", "max_retries": -1}, id="max-retries-negative"),
        pytest.param({"name": "ok", "max_retries": 1001}, id="max-retries-1001"),
        pytest.param({"name": "ok", "ttl_seconds": -1}, id="ttl-negative"),
        pytest.param({"name": "ok", "max_interruptions": -1}, id="max-interruptions-negative"),
        pytest.param({"name": "ok", "max_interruptions": 1001}, id="max-interruptions-1001"),
    ],
)
async def test_create_queue_rejects_bad_input_and_creates_nothing(
    client: Client, fields: dict[str, Any]
) -> None:
    request = apb.CreateQueueRequest(**fields)
    await _fails(client.admin.CreateQueue(request, timeout=5), INVALID)
    assert list(await _queues(client)) == ["default"]


# --- DeleteQueue -----------------------------------------------------------------------------


async def test_delete_an_empty_queue(client: Client) -> None:
    await _create(client, "temp")
    reply = await client.admin.DeleteQueue(apb.DeleteQueueRequest(name="temp"), timeout=5)
    assert reply.deleted_jobs == 0
    assert "temp" not in await _queues(client)


async def test_delete_a_queue_with_only_finished_jobs_needs_force(client: Client) -> None:
    """Finished jobs are history: an unforced delete keeps them (the finding deleted five)."""
    await _create(client, "temp")
    job_id = await _submit(client, queue_name="temp")
    await _cancel(client, job_id)  # DEAD_LETTERED: finished
    details = await _fails(
        client.admin.DeleteQueue(apb.DeleteQueueRequest(name="temp"), timeout=5), PRECONDITION
    )
    assert details == (
        "queue 'temp' holds 1 job(s), 0 unfinished; deleting it deletes them and their history: "
        "use --force (DeleteQueue force=true)"
    )
    await client.jobs.GetJobLogs(jpb.GetJobLogsRequest(job_id=job_id), timeout=5)  # still there
    request = apb.DeleteQueueRequest(name="temp", force=True)
    assert (await client.admin.DeleteQueue(request, timeout=5)).deleted_jobs == 1
    request_status = jpb.GetJobStatusRequest(job_id=job_id)
    await _fails(client.jobs.GetJobStatus(request_status, timeout=5), NOT_FOUND)


async def test_delete_a_queue_with_pending_jobs_fails_and_changes_nothing(client: Client) -> None:
    await _create(client, "busy")
    job_id = await _submit(client, queue_name="busy")
    details = await _fails(
        client.admin.DeleteQueue(apb.DeleteQueueRequest(name="busy"), timeout=5), PRECONDITION
    )
    assert details.startswith("queue 'busy' holds 1 job(s), 1 unfinished;")
    assert "--force" in details
    assert "busy" in await _queues(client)
    job = await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=5)
    assert job.job.status == cpb.JOB_STATUS_PENDING


async def test_force_deletes_a_queue_with_its_jobs(client: Client) -> None:
    await _create(client, "busy")
    ids = [await _submit(client, queue_name="busy") for _ in range(3)]
    await _cancel(client, ids[0])
    kept = await _submit(client)  # another queue's job stays
    request = apb.DeleteQueueRequest(name="busy", force=True)
    reply = await client.admin.DeleteQueue(request, timeout=5)
    assert reply.deleted_jobs == 3
    assert "busy" not in await _queues(client)
    for job_id in ids:
        await _fails(
            client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=5),
            NOT_FOUND,
        )
    await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=kept), timeout=5)


@pytest.mark.parametrize("drained", [False, True], ids=["online", "draining"])
async def test_delete_a_queue_live_workers_serve_is_refused_even_forced(
    client: Client, drained: bool
) -> None:
    await _create(client, "served")
    worker_id = await _register(client, ("default", "served"), concurrency=1)
    if drained:
        await _drain(client, worker_id)
    for force in (False, True):
        details = await _fails(
            client.admin.DeleteQueue(apb.DeleteQueueRequest(name="served", force=force), timeout=5),
            PRECONDITION,
        )
        assert details.startswith(f"queue 'served' is served by 1 live worker(s) ({worker_id}):")
        assert "stop them" in details
    assert "served" in await _queues(client)
    await _deregister(client, worker_id)  # OFFLINE: no longer in the way
    reply = await client.admin.DeleteQueue(apb.DeleteQueueRequest(name="served"), timeout=5)
    assert reply.deleted_jobs == 0
    assert "served" not in await _queues(client)


async def test_delete_sees_workers_of_other_replicas(client: Client, db_dsn: str) -> None:
    """The check reads the workers table, not this replica's registry: a worker registered
    through another jq-server (here: written straight to the database) counts."""
    await _create(client, "elsewhere")
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute(
            "INSERT INTO workers (worker_id, queues) VALUES ($1, ARRAY['elsewhere'])",
            uuid.UUID(UNKNOWN_ID),
        )
    finally:
        await conn.close()
    request = apb.DeleteQueueRequest(name="elsewhere", force=True)
    details = await _fails(client.admin.DeleteQueue(request, timeout=5), PRECONDITION)
    assert UNKNOWN_ID in details


async def test_delete_an_unknown_queue_is_not_found(client: Client) -> None:
    request = apb.DeleteQueueRequest(name="ghost", force=True)
    await _fails(client.admin.DeleteQueue(request, timeout=5), NOT_FOUND)


# --- ListQueues ------------------------------------------------------------------------------


async def test_list_queues_includes_the_seeded_default(client: Client) -> None:
    default = (await _queues(client))["default"]
    assert (default.max_retries, default.ttl_seconds) == (3, 0)


async def test_list_queues_is_sorted_by_name(client: Client) -> None:
    for name in ("zeta", "alpha", "mid"):
        await _create(client, name)
    reply = await client.admin.ListQueues(apb.ListQueuesRequest(), timeout=5)
    assert [q.name for q in reply.queues] == ["alpha", "default", "mid", "zeta"]


# --- GetQueueStats ---------------------------------------------------------------------------


async def test_queue_stats_count_jobs_per_status(client: Client) -> None:
    await _create(client, "stats")
    worker = await ProtocolWorker(client, queues=("stats",), concurrency=4).start()
    for i in range(4):
        await _submit(client, queue_name="stats", payload=job_payload(i))
    done, retried, running, _assigned = await worker.take(4, within=5)
    await worker.ack([done, retried, running])
    await worker.report(done)
    await worker.report(retried, wpb.JOB_OUTCOME_FAILED, error="x")  # PENDING, backing off
    await _drain(client, worker.worker_id)  # the freed slots take nothing more
    await _submit(client, queue_name="stats")  # PENDING
    await _cancel(client, await _submit(client, queue_name="stats"))  # DEAD_LETTERED
    await _submit(client)  # another queue's job is not counted
    stats = await _stats(client, "stats")
    assert stats.queue_name == "stats"
    assert (
        stats.pending,
        stats.assigned,
        stats.running,
        stats.done,
        stats.failed,
        stats.dead_lettered,
    ) == (2, 1, 1, 1, 0, 1)
    assert stats.total_retries == 1
    assert 0 <= stats.oldest_pending_age_s < 60
    await worker.close()


async def test_queue_stats_of_an_empty_queue_are_zero(client: Client) -> None:
    await _create(client, "empty")
    stats = await _stats(client, "empty")
    assert stats.queue.name == "empty"  # its settings: not paused, no limits
    assert not stats.queue.paused
    assert not stats.queue.max_running
    assert not stats.queue.HasField("rate")
    stats.ClearField("queue")
    assert stats == apb.QueueStats(queue_name="empty", max_interruptions=3)


async def test_queue_stats_of_an_unknown_queue_are_not_found(client: Client) -> None:
    request = apb.GetQueueStatsRequest(name="ghost")
    await _fails(client.admin.GetQueueStats(request, timeout=5), NOT_FOUND)


# --- ListWorkers -----------------------------------------------------------------------------


async def test_list_workers_all_and_by_status(client: Client) -> None:
    online, draining, offline = [await _register(client) for _ in range(3)]
    await _drain(client, draining)
    await _deregister(client, offline)
    assert {w.worker_id for w in await _workers(client)} == {online, draining, offline}
    for status, expected in (
        (cpb.WORKER_STATUS_ONLINE, online),
        (cpb.WORKER_STATUS_DRAINING, draining),
        (cpb.WORKER_STATUS_OFFLINE, offline),
    ):
        [worker] = await _workers(client, status)
        assert (worker.worker_id, worker.status) == (expected, status)


async def test_list_workers_with_none_registered_is_empty(client: Client) -> None:
    assert await _workers(client) == []


# --- DrainWorker -----------------------------------------------------------------------------


async def test_a_drained_worker_gets_no_new_jobs_and_is_told_to_drain(client: Client) -> None:
    drained = await ProtocolWorker(client, concurrency=5).start()
    active = await ProtocolWorker(client, concurrency=5).start()
    worker = await _drain(client, drained.worker_id)
    assert (worker.worker_id, worker.status) == (drained.worker_id, cpb.WORKER_STATUS_DRAINING)
    ids = {await _submit(client) for _ in range(3)}
    assert {a.job_id for a in await active.take(3, within=5)} == ids
    assert await drained.nothing_more(0.3)
    assert list((await drained.heartbeat()).commands) == [wpb.WORKER_COMMAND_DRAIN]
    assert list((await active.heartbeat()).commands) == []
    [listed] = await _workers(client, cpb.WORKER_STATUS_DRAINING)
    assert listed.worker_id == drained.worker_id
    await drained.close()
    await active.close()


async def test_a_drained_worker_keeps_its_running_jobs(client: Client) -> None:
    worker = await ProtocolWorker(client, concurrency=2).start()
    job_id = await _submit(client)
    [assignment] = await worker.take(1, within=5)
    await worker.ack([assignment])
    await _drain(client, worker.worker_id)
    await worker.report(assignment, result=b"finished")
    reply = await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=5)
    assert (reply.job.status, reply.job.result) == (cpb.JOB_STATUS_DONE, b"finished")
    await worker.close()


async def test_drain_an_unknown_worker_is_not_found(client: Client) -> None:
    request = apb.DrainWorkerRequest(worker_id=UNKNOWN_ID)
    await _fails(client.admin.DrainWorker(request, timeout=5), NOT_FOUND)


async def test_drain_with_a_malformed_worker_id_is_invalid(client: Client) -> None:
    request = apb.DrainWorkerRequest(worker_id="worker-7")
    await _fails(client.admin.DrainWorker(request, timeout=5), INVALID)


async def test_drain_an_offline_worker_fails_and_changes_nothing(client: Client) -> None:
    worker_id = await _register(client)
    await _deregister(client, worker_id)
    request = apb.DrainWorkerRequest(worker_id=worker_id)
    details = await _fails(client.admin.DrainWorker(request, timeout=5), PRECONDITION)
    assert "OFFLINE" in details
    assert (await _workers(client))[0].status == cpb.WORKER_STATUS_OFFLINE


# --- ShutdownWorker --------------------------------------------------------------------------


async def test_shutdown_reaches_the_worker_in_its_next_heartbeat(client: Client) -> None:
    worker = await ProtocolWorker(client).start()
    other = await ProtocolWorker(client).start()
    request = apb.ShutdownWorkerRequest(worker_id=worker.worker_id)
    reply = await client.admin.ShutdownWorker(request, timeout=5)
    assert reply.worker.worker_id == worker.worker_id
    assert wpb.WORKER_COMMAND_SHUTDOWN in (await worker.heartbeat()).commands
    assert list((await other.heartbeat()).commands) == []
    await worker.close()
    await other.close()


async def test_shutdown_an_unknown_worker_is_not_found(client: Client) -> None:
    request = apb.ShutdownWorkerRequest(worker_id=UNKNOWN_ID)
    await _fails(client.admin.ShutdownWorker(request, timeout=5), NOT_FOUND)


async def test_shutdown_an_offline_worker_fails(client: Client) -> None:
    worker_id = await _register(client)
    await _deregister(client, worker_id)
    request = apb.ShutdownWorkerRequest(worker_id=worker_id)
    await _fails(client.admin.ShutdownWorker(request, timeout=5), PRECONDITION)


# --- GetSystemStatus -------------------------------------------------------------------------


async def test_system_status_reports_version_uptime_health_and_counts(db_dsn: str) -> None:
    async with running_server(db_dsn) as (app, client):
        await _register(client)
        await _register(client)
        await _deregister(client, await _register(client))
        for _ in range(3):
            await _submit(client)
        await _cancel(client, await _submit(client))
        reply = await client.admin.GetSystemStatus(apb.GetSystemStatusRequest(), timeout=5)
        assert reply.version == jobq.__version__
        assert reply.uptime.ToTimedelta() > timedelta(0)
        assert reply.started_at.ToDatetime().year == app.started_at.year
        states = {c.name: c.state for c in reply.components}
        assert states == {
            "postgres": apb.COMPONENT_STATE_HEALTHY,
            "redis": apb.COMPONENT_STATE_DISABLED,
            "kafka": apb.COMPONENT_STATE_DISABLED,
        }
        assert {k: v for k, v in reply.workers_by_status.items() if v} == {
            "ONLINE": 2,
            "OFFLINE": 1,
        }
        assert {k: v for k, v in reply.jobs_by_status.items() if v} == {
            "PENDING": 3,
            "DEAD_LETTERED": 1,
        }
        assert set(reply.jobs_by_status) <= {
            cpb.JobStatus.keys()[i].removeprefix("JOB_STATUS_")
            for i in range(1, len(cpb.JobStatus.keys()))
        }


async def test_system_status_of_an_empty_system_has_no_non_zero_counts(client: Client) -> None:
    reply = await client.admin.GetSystemStatus(apb.GetSystemStatusRequest(), timeout=5)
    assert not any(reply.workers_by_status.values())
    assert not any(reply.jobs_by_status.values())


# --- what every admin RPC does ---------------------------------------------------------------


async def test_admin_errors_carry_the_correlation_id_and_no_stack_trace(client: Client) -> None:
    correlation = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.admin.GetQueueStats(
            apb.GetQueueStatsRequest(name="ghost"),
            metadata=(("x-correlation-id", correlation),),
            timeout=5,
        )
    assert caught.value.code() is NOT_FOUND
    assert "Traceback" not in (caught.value.details() or "")
    assert ("x-correlation-id", correlation) in tuple(caught.value.trailing_metadata() or ())
