"""WatchJobs pushes each watched job once it has ended: at once for one that already has, on
this replica's lifecycle stream for one it ends, by the shared periodic look for one another
replica ends; bad input is refused before anything is sent."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from support.payloads import job_payload
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, client_for, running_server

from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import worker_service_pb2 as wpb
from jobq.server import job_watch


async def _submit(client: Client, tag: object = None) -> str:
    reply = await client.jobs.SubmitJob(
        jpb.SubmitJobRequest(queue_name="default", payload=job_payload(str(tag))), timeout=5
    )
    return reply.job_id


async def _watch(client: Client, job_ids: list[str]) -> list[jpb.WatchJobsResponse]:
    call = client.jobs.WatchJobs(jpb.WatchJobsRequest(job_ids=job_ids), timeout=30)
    return [message async for message in call]


async def test_a_job_ended_by_this_replica_is_pushed_not_found_by_a_look(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The periodic look is made to never run within the test, so only the push can deliver;
    the watch opened first, then the job runs: the message is the DONE job with its result."""
    monkeypatch.setattr(job_watch, "POLL_S", 3600.0)
    async with running_server(db_dsn) as (_, client):
        job_id = await _submit(client)
        watching = asyncio.create_task(_watch(client, [job_id]))
        await asyncio.sleep(0.2)  # the watch is open (it returns only once the job ended)
        assert not watching.done()
        worker = await ProtocolWorker(client).start()
        [assignment] = await worker.take(1)
        await worker.ack([assignment])
        await worker.report(assignment, result=b'{"value": 42}')
        async with asyncio.timeout(10):
            [message] = await watching
        assert message.job.job_id == job_id
        assert message.job.status == cpb.JOB_STATUS_DONE
        assert message.job.result == b'{"value": 42}'
        await worker.close()


async def test_already_ended_jobs_come_at_once_and_the_stream_ends_with_the_last(
    db_dsn: str,
) -> None:
    async with running_server(db_dsn) as (_, client):
        cancelled = await _submit(client, "cancelled")
        await client.jobs.CancelJob(jpb.CancelJobRequest(job_id=cancelled), timeout=5)
        await _submit(client, "done")
        worker = await ProtocolWorker(client, concurrency=1).start()
        [assignment] = await worker.take(1)
        done = assignment.job_id
        await worker.run([assignment])
        # Both ended before the watch opens (an id named twice is sent once).
        call = client.jobs.WatchJobs(
            jpb.WatchJobsRequest(job_ids=[done, cancelled, done]), timeout=30
        )
        got = [(m.job.job_id, m.job.status) async for m in call]
        assert sorted(got) == sorted(
            [(done, cpb.JOB_STATUS_DONE), (cancelled, cpb.JOB_STATUS_DEAD_LETTERED)]
        )
        await worker.close()


async def test_many_waiters_on_one_channel_each_get_their_job(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_watch, "POLL_S", 3600.0)  # pushed, every one
    async with running_server(db_dsn) as (_, client):
        job_ids = [await _submit(client, i) for i in range(40)]
        waits = [asyncio.create_task(_watch(client, [job_id])) for job_id in job_ids]
        worker = await ProtocolWorker(client, concurrency=8).start()
        serving = asyncio.create_task(worker.serve({}))
        try:
            async with asyncio.timeout(30):
                results = await asyncio.gather(*waits)
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            await worker.close()
        assert [[m.job.job_id for m in r] for r in results] == [[j] for j in job_ids]


async def test_a_job_another_replica_ends_is_found_by_the_look(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_watch, "POLL_S", 0.1)
    async with running_server(db_dsn) as (_, watching), running_server(db_dsn) as (other, _):
        assert other.grpc_port is not None
        working = client_for(other.grpc_port)
        try:
            job_id = await _submit(working)
            waiting = asyncio.create_task(_watch(watching, [job_id]))
            worker = await ProtocolWorker(working).start()
            [assignment] = await worker.take(1)
            await worker.ack([assignment])
            await worker.report(assignment, wpb.JOB_OUTCOME_REFUSED, error="not here")
            async with asyncio.timeout(10):
                [message] = await waiting
            assert message.job.status == cpb.JOB_STATUS_DEAD_LETTERED
            assert message.job.error_message == "not here"
            await worker.close()
        finally:
            await working.channel.close()


@pytest.mark.parametrize(
    ("job_ids", "code", "says"),
    [
        ([], grpc.StatusCode.INVALID_ARGUMENT, "at least one"),
        (["not-a-uuid"], grpc.StatusCode.INVALID_ARGUMENT, "job id"),
        (["0190f1d2-0000-7000-8000-000000000000"] * 1001, grpc.StatusCode.INVALID_ARGUMENT, "1000"),
        (["0190f1d2-0000-7000-8000-000000000000"], grpc.StatusCode.NOT_FOUND, "not found"),
    ],
)
async def test_bad_or_unknown_ids_are_refused_before_anything_is_sent(
    db_dsn: str, job_ids: list[str], code: grpc.StatusCode, says: str
) -> None:
    async with running_server(db_dsn) as (_, client):
        known = await _submit(client)
        # A known, pending job among them changes nothing: the whole call is refused.
        ids = [known, *job_ids] if job_ids and len(job_ids) <= 1 else job_ids
        call = client.jobs.WatchJobs(jpb.WatchJobsRequest(job_ids=ids), timeout=10)
        received: list[jpb.WatchJobsResponse] = []

        async def read() -> None:
            async for message in call:
                received.append(message)

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await read()
        assert caught.value.code() == code
        assert says in (caught.value.details() or "").lower()
        assert received == []
