"""Worker incarnations over real gRPC: every process registered under a worker id is a new
incarnation, a restart releases what the previous process held, the same process reconnecting
keeps its jobs, and every call of a superseded process is refused (FAILED_PRECONDITION) and
changes nothing — on every replica, including one that did not see the newer registration."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import asyncpg
import grpc
import pytest
from support.payloads import job_payload
from support.protocol_worker import ProtocolWorker, attempt_of
from support.server_harness import Client, running_server

from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import worker_service_pb2 as wpb

PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
SUPERSEDED = "superseded by a newer process of worker"


@pytest.fixture
async def client(db_dsn: str) -> AsyncIterator[Client]:
    async with running_server(db_dsn) as (_, connected):
        yield connected


async def _refused(call: Awaitable[Any], says: str = SUPERSEDED) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is PRECONDITION, caught.value.details()
    assert says in (caught.value.details() or "")


async def _submit(client: Client, n: int = 1) -> list[str]:
    return [
        (
            await client.jobs.SubmitJob(
                jpb.SubmitJobRequest(queue_name="default", payload=job_payload(str(i).encode())),
                timeout=5,
            )
        ).job_id
        for i in range(n)
    ]


async def _job(client: Client, job_id: str) -> cpb.Job:
    return (await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=5)).job


async def _reasons(client: Client, job_id: str) -> list[str]:
    reply = await client.jobs.GetJobLogs(jpb.GetJobLogsRequest(job_id=job_id), timeout=5)
    return [e.reason for e in reply.events]


async def _snapshot(db_dsn: str) -> tuple[list[tuple[Any, ...]], ...]:
    conn = await asyncpg.connect(db_dsn)
    try:
        tables = []
        for statement in (
            "SELECT * FROM jobs ORDER BY job_id",
            "SELECT id FROM job_events ORDER BY id",
            "SELECT worker_id, status, incarnation, last_heartbeat FROM workers ORDER BY 1",
        ):
            tables.append([tuple(r) for r in await conn.fetch(statement)])
        return tuple(tables)
    finally:
        await conn.close()


async def _answer(call: Awaitable[Any]) -> Any:
    """The reply, or the error the call failed with."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        return error


def _is_superseded(answer: Any) -> bool:
    return (
        isinstance(answer, grpc.aio.AioRpcError)
        and answer.code() is PRECONDITION
        and SUPERSEDED in (answer.details() or "")
    )


async def test_a_new_process_gets_back_what_its_predecessor_held_and_the_old_one_is_refused(
    client: Client, db_dsn: str
) -> None:
    old = await ProtocolWorker(client, concurrency=2).start()
    ids = await _submit(client, 2)
    held = await old.take(2)
    await old.ack(held[:1])  # one RUNNING, one ASSIGNED when the process "dies"

    new = await ProtocolWorker(client, concurrency=2, worker_id=old.worker_id).start()

    assert new.incarnation != old.incarnation
    again = await new.take(2)
    assert sorted((a.job_id, a.attempt) for a in again) == sorted((i, 2) for i in ids)
    assert {a.claim_id for a in again}.isdisjoint({a.claim_id for a in held})
    for job_id in ids:
        assert (await _reasons(client, job_id))[-2:] == ["WORKER_RESTARTED", "ASSIGNED"]
        job = await _job(client, job_id)
        assert (job.retry_count, job.interruptions) == (0, 1)
    assert await old.nothing_more(0.3)  # its stream was closed; nothing reaches it
    before = await _snapshot(db_dsn)
    # Every call of the superseded process is refused and changes nothing.
    await _refused(old.heartbeat(held))
    await _refused(old.ack(held))
    await _refused(old.report(held[0], result=b"late"))
    await _refused(old.report_many(held, result=b"late"))
    await _refused(old.deregister())
    await _refused(old.register())
    stream = client.workers.StreamJobBatches(
        wpb.StreamJobsRequest(worker_id=old.worker_id, incarnation=old.incarnation), timeout=5
    )
    await _refused(stream.read())
    assert await _snapshot(db_dsn) == before
    await new.run(again)
    for job_id in ids:
        assert (await _job(client, job_id)).status == cpb.JOB_STATUS_DONE
    await old.close()
    await new.close()


async def test_the_same_process_reconnecting_keeps_its_jobs(client: Client) -> None:
    worker = await ProtocolWorker(client, concurrency=2).start()
    ids = await _submit(client, 2)
    held = await worker.take(2)
    await worker.ack(held)
    await worker.close()  # a network blip or a server restart: the stream is gone
    incarnation = worker.incarnation
    back = ProtocolWorker(
        client, concurrency=2, worker_id=worker.worker_id, incarnation=incarnation
    )
    await back.start()
    assert back.incarnation == incarnation
    await _submit(client)  # its two slots are still taken by the jobs it runs
    assert await back.nothing_more(0.5)
    await back.report_many(held, result=b"ok")
    for job_id in ids:
        job = await _job(client, job_id)
        assert (job.status, job.attempt, job.interruptions) == (cpb.JOB_STATUS_DONE, 1, 0)
        assert "WORKER_RESTARTED" not in await _reasons(client, job_id)
    [third] = await back.take(1)
    await back.run([third])
    await back.close()


async def test_calls_without_an_incarnation_are_refused(client: Client) -> None:
    """A jq-worker from before incarnations presents none: it is never given a job."""
    worker = await ProtocolWorker(client).start()
    [job_id] = await _submit(client)
    [held] = await worker.take(1)
    says = "no incarnation presented"
    await _refused(worker.heartbeat([held], incarnation=""), says)
    await _refused(worker.ack([held], incarnation=""), says)
    await _refused(worker.report(held, incarnation=""), says)
    await _refused(worker.report_many([held], incarnation=""), says)
    await _refused(worker.deregister(incarnation=""), says)
    stream = client.workers.StreamJobs(wpb.StreamJobsRequest(worker_id=worker.worker_id))
    await _refused(stream.read(), says)
    # Reports without the claim id are refused as stale, like any report of another claim.
    [outcome] = (
        await client.workers.AckJobs(
            wpb.AckJobsRequest(
                worker_id=worker.worker_id,
                incarnation=worker.incarnation,
                jobs=[wpb.JobAttempt(job_id=held.job_id, attempt=held.attempt)],
            ),
            timeout=5,
        )
    ).outcomes
    assert not outcome.accepted
    await _refused(worker.report(held, claim_id=""), "no longer current")
    assert (await _job(client, job_id)).status == cpb.JOB_STATUS_ASSIGNED
    await worker.run([held])
    await worker.close()


async def test_a_malformed_incarnation_or_claim_id_is_invalid(client: Client) -> None:
    worker = await ProtocolWorker(client).start()
    await _submit(client)
    [held] = await worker.take(1)
    for call in (
        worker.heartbeat(incarnation="process-1"),
        worker.ack([held], incarnation="process-1"),
        worker.report(held, claim_id="claim-1"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    await worker.close()


async def test_a_superseded_process_is_refused_on_the_replica_that_did_not_see_the_restart(
    db_dsn: str,
) -> None:
    fast = {"scheduler.interval_ms": 50}
    async with (
        running_server(db_dsn, fast) as (_, on_a),
        running_server(db_dsn, fast) as (_, on_b),
    ):
        old = await ProtocolWorker(on_a, concurrency=2).start()
        [job_id] = await _submit(on_a)
        [held] = await old.take(1)
        await old.ack([held])  # replica A now remembers the old process as current
        # A new process under the same id registers through replica B.
        new = await ProtocolWorker(on_b, concurrency=2, worker_id=old.worker_id).start()
        [again] = await new.take(1)
        assert (again.job_id, again.attempt) == (job_id, 2)

        # Whatever A still believes, the old process's reports cannot change anything: the
        # restart released its claim, so each item fails its claim fence.
        answer = await _answer(old.report_many([held], result=b"late"))
        assert _is_superseded(answer) or [o.accepted for o in answer.outcomes] == [False]
        assert (await _job(on_a, job_id)).status == cpb.JOB_STATUS_ASSIGNED
        # Nor does its stream on A get anything: claims are made for the current process only.
        [more] = await _submit(on_a)
        [delivered] = await new.take(1)
        assert delivered.job_id == more
        assert await old.nothing_more(0.3)

        # A's memory of the old process is trusted only for a few seconds: from then on its
        # reports are refused outright, without any heartbeat telling A.
        async with asyncio.timeout(15):
            while not _is_superseded(await _answer(old.report_many([held], result=b"late"))):
                await asyncio.sleep(0.2)
        # The heartbeat, always checked against the database, is refused at once on A too.
        await _refused(old.heartbeat([held]))
        await _refused(old.ack([held]))
        await new.run([again, delivered])
        assert (await _job(on_b, job_id)).status == cpb.JOB_STATUS_DONE
        await old.close()
        await new.close()


async def test_a_heartbeat_refusal_makes_the_replica_refuse_the_reports_at_once(
    db_dsn: str,
) -> None:
    async with (
        running_server(db_dsn) as (_, on_a),
        running_server(db_dsn) as (_, on_b),
    ):
        old = await ProtocolWorker(on_a).start()
        await _submit(on_a)
        [held] = await old.take(1)
        await old.ack([held])
        new = ProtocolWorker(on_b, worker_id=old.worker_id)
        await new.register()
        await _refused(old.heartbeat([held]))  # on A
        # A forgot what it remembered: the very next report is looked up, and refused.
        await _refused(old.report_many([held], result=b"late"))
        await _refused(
            on_a.workers.AckJobs(
                wpb.AckJobsRequest(
                    worker_id=old.worker_id, incarnation=old.incarnation, jobs=[attempt_of(held)]
                ),
                timeout=5,
            )
        )
        await old.close()


async def test_an_unknown_worker_presenting_an_incarnation_is_not_found(client: Client) -> None:
    stranger = ProtocolWorker(client, worker_id=str(uuid.uuid4()), incarnation=str(uuid.uuid4()))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stranger.heartbeat()
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    # Registering with an incarnation the database does not know (it lost the registration,
    # e.g. restored from a backup) takes it: the process goes on as itself.
    await stranger.register()
    assert (await stranger.heartbeat()).commands is not None
