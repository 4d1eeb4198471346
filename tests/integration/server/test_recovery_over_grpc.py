"""Recovery paths through the running server: lost workers, unacknowledged assignments, TTL,
failed stream writes, and fencing of stale reports (SPEC §4, §6)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import grpc
import pytest
from support.payloads import job_payload
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, running_server

from jobq.coordination.locker import NoopLocker
from jobq.domain.ids import uuid7
from jobq.domain.records import NewJob
from jobq.domain.states import JobStatus, Reason
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.server.dispatcher import Dispatcher
from jobq.server.incarnations import IncarnationGate
from jobq.server.job_stream import JobStreams
from jobq.server.lifecycle import Lifecycle
from jobq.server.undelivered import Undelivered
from jobq.server.worker_capacity import WorkerCapacity
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.workers import PgWorkerStore

FAST_RECOVERY = {
    "scheduler.worker_heartbeat_timeout_s": 1,
    "scheduler.heartbeat_check_interval_s": 0.2,
    "scheduler.retry_base_delay_s": 0,
    "scheduler.retry_max_delay_s": 0,
}


async def _status(client: Client, job_id: str) -> jpb.GetJobStatusResponse:
    return await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=5)


async def _wait_for(client: Client, job_id: str, status: int, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while (await _status(client, job_id)).job.status != status:
            await asyncio.sleep(0.05)


async def _reasons(client: Client, job_id: str) -> list[str]:
    reply = await client.jobs.GetJobLogs(jpb.GetJobLogsRequest(job_id=job_id), timeout=5)
    return [e.reason for e in reply.events]


async def test_a_silent_worker_is_declared_lost_and_its_jobs_run_elsewhere(db_dsn: str) -> None:
    async with running_server(db_dsn, FAST_RECOVERY) as (_, client):
        ids = [
            (
                await client.jobs.SubmitJob(
                    jpb.SubmitJobRequest(queue_name="default", payload=job_payload(b"x")), timeout=5
                )
            ).job_id
            for _ in range(2)
        ]
        lost = await ProtocolWorker(client, concurrency=2).start()
        first = await lost.take(2)
        await lost.ack(first[:1])  # one RUNNING, one still ASSIGNED
        # `lost` never heartbeats: after the timeout both attempts are interrupted (WORKER_LOST)
        # and back to PENDING, no retry used. Its stream is still open, but a worker that is
        # not ONLINE gets nothing.
        for job_id in ids:
            await _wait_for(client, job_id, cpb.JOB_STATUS_PENDING)
        assert await lost.nothing_more(0.3)
        rescuer = await ProtocolWorker(client, concurrency=2).start()
        second = await rescuer.take(2)
        assert {a.attempt for a in second} == {2}
        # The lost worker's late report for the old attempt is rejected and changes nothing.
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await lost.report(first[0], result=b"late")
        assert late.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        await rescuer.run(second, result=b"fine")
        for job_id in ids:
            reply = await _status(client, job_id)
            assert reply.job.result == b"fine"
            assert (reply.job.retry_count, reply.job.interruptions) == (0, 1)
            reasons = await _reasons(client, job_id)
            assert reasons.count("WORKER_LOST") == 1
            assert reasons[-1] == "COMPLETED"
        workers = await client.admin.ListWorkers(apb.ListWorkersRequest(), timeout=5)
        by_id = {w.worker_id: w.status for w in workers.workers}
        assert by_id[lost.worker_id] == cpb.WORKER_STATUS_OFFLINE
        await lost.close()
        await rescuer.close()


async def test_a_worker_killed_repeatedly_by_a_poison_job_dead_letters_it(db_dsn: str) -> None:
    async with running_server(db_dsn, FAST_RECOVERY) as (_, client):
        await client.admin.CreateQueue(
            apb.CreateQueueRequest(name="poison", max_retries=1, max_interruptions=1), timeout=5
        )
        job_id = (
            await client.jobs.SubmitJob(
                jpb.SubmitJobRequest(queue_name="poison", payload=job_payload(b"x")), timeout=5
            )
        ).job_id
        for _ in range(2):  # the first loss is survived, the second is one more than allowed
            victim = await ProtocolWorker(client, queues=("poison",), concurrency=1).start()
            [assignment] = await victim.take(1)
            await victim.ack([assignment])
            await victim.close()  # "killed": no more heartbeats
            async with asyncio.timeout(10):
                while (await _status(client, job_id)).job.attempt == assignment.attempt and (
                    (await _status(client, job_id)).job.status == cpb.JOB_STATUS_RUNNING
                ):
                    await asyncio.sleep(0.05)
        await _wait_for(client, job_id, cpb.JOB_STATUS_DEAD_LETTERED)
        reasons = await _reasons(client, job_id)
        assert reasons.count("WORKER_LOST") == 2
        assert reasons[-1] == "POISON"
        job = (await _status(client, job_id)).job
        assert (job.retry_count, job.interruptions) == (0, 2)


async def test_an_unacknowledged_assignment_returns_to_pending(db_dsn: str) -> None:
    async with running_server(db_dsn, {"scheduler.assignment_timeout_s": 1}) as (_, client):
        job_id = (
            await client.jobs.SubmitJob(
                jpb.SubmitJobRequest(queue_name="default", payload=job_payload(b"x")), timeout=5
            )
        ).job_id
        worker = await ProtocolWorker(client, concurrency=1).start()
        [first] = await worker.take(1)
        # Never acknowledged: the reaper gives it back (no retry used) and it is assigned again.
        [second] = await worker.take(1, within=10)
        assert second.job_id == job_id
        assert second.attempt == first.attempt + 1
        assert second.retry_count == 0
        assert "ASSIGNMENT_TIMEOUT" in await _reasons(client, job_id)
        assert (await _status(client, job_id)).job.interruptions == 1
        await worker.run([second])
        await worker.close()


async def test_pending_jobs_past_their_queue_ttl_are_dead_lettered(db_dsn: str) -> None:
    async with running_server(db_dsn, {"scheduler.assignment_timeout_s": 1}) as (_, client):
        await client.admin.CreateQueue(
            apb.CreateQueueRequest(name="short", ttl_seconds=1), timeout=5
        )
        job_id = (
            await client.jobs.SubmitJob(
                jpb.SubmitJobRequest(queue_name="short", payload=job_payload(b"x")), timeout=5
            )
        ).job_id
        await _wait_for(client, job_id, cpb.JOB_STATUS_DEAD_LETTERED)
        assert (await _reasons(client, job_id))[-1] == "TTL_EXPIRED"


async def test_a_failed_stream_write_returns_the_job_at_once_without_a_retry(
    pool: asyncpg.Pool,
) -> None:
    jobs, workers = PgJobStore(pool), PgWorkerStore(pool)
    capacity = WorkerCapacity()
    lifecycle = Lifecycle()
    lifecycle.subscribe(capacity.left)
    undelivered = Undelivered(jobs, lifecycle)
    dispatcher = Dispatcher(
        jobs,
        capacity,
        lifecycle,
        undelivered,
        batch_size=10,
        interval_s=60,
        assignment_timeout_s=30,
        locker=NoopLocker(),
    )
    streams = JobStreams(workers, jobs, capacity, undelivered, IncarnationGate(workers, capacity))
    worker_id = uuid.uuid4()
    registration = await workers.worker_register(worker_id, "h", 2, ["default"])
    job_id = uuid7()
    await jobs.jobs_insert([NewJob(job_id, "default", b"x")])
    connected = capacity.attach(worker_id, ["default"], 2, incarnation=registration.incarnation)
    await dispatcher.run_once()
    assert connected.free_slots == 1

    class BrokenStream:
        async def write(self, message: object) -> None:
            raise ConnectionResetError("the worker went away")

    with pytest.raises(ConnectionResetError):
        await streams._pump(connected, BrokenStream())  # type: ignore[arg-type]
    job = await jobs.job_get(job_id)
    # Never delivered: neither a retry nor an interruption.
    assert (job.status, job.retry_count, job.worker_id, job.interruptions) == (
        JobStatus.PENDING,
        0,
        None,
        0,
    )
    events = [e.reason for e in await _events(pool, job_id)]
    assert events[-1] is Reason.DELIVERY_FAILED
    assert connected.free_slots == 2


class _NullObserver:
    def rpc_finished(self, service: str, method: str, code: str, seconds: float) -> None:
        pass

    def database_error(self) -> None:
        pass


async def _events(pool: asyncpg.Pool, job_id: uuid.UUID) -> list:  # type: ignore[type-arg]
    from jobq.storage.postgres.job_events import PgJobEventStore

    return await PgJobEventStore(pool).job_events_list(job_id)
