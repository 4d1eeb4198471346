"""Demand-driven dispatch over real gRPC against a real PostgreSQL (SPEC §6)."""

from __future__ import annotations

import asyncio

import asyncpg
from google.protobuf.duration_pb2 import Duration
from support.payloads import job_payload
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, running_server

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import job_service_pb2 as jpb


async def _submit(client: Client, n: int = 1, **fields: object) -> list[str]:
    ids = []
    fields.setdefault("queue_name", "default")
    for i in range(n):
        request = jpb.SubmitJobRequest(payload=job_payload(i), **fields)  # type: ignore[arg-type]
        ids.append((await client.jobs.SubmitJob(request, timeout=10)).job_id)
    return ids


async def test_jobs_are_assigned_in_priority_then_age_order(db_dsn: str) -> None:
    async with running_server(db_dsn) as (_, client):
        low = await _submit(client, 2, priority=1)
        high = await _submit(client, 2, priority=8)
        mid = await _submit(client, 1, priority=4)
        worker = await ProtocolWorker(client, concurrency=10).start()
        got = await worker.take(5)
        assert [a.job_id for a in got] == high + mid + low
        assert all(a.attempt == 1 and a.worker_id == worker.worker_id for a in got)
        await worker.close()


async def test_delayed_jobs_are_not_assigned_early(db_dsn: str) -> None:
    async with running_server(db_dsn) as (_, client):
        await _submit(client, 1, delay=Duration(seconds=3600))
        worker = await ProtocolWorker(client).start()
        assert await worker.nothing_more(0.7)
        [due] = await _submit(client, 1, delay=Duration(seconds=0))
        [got] = await worker.take(1)
        assert got.job_id == due
        await worker.close()


async def test_no_job_goes_to_a_worker_that_does_not_serve_its_queue(db_dsn: str) -> None:
    async with running_server(db_dsn) as (_, client):
        await client.admin.CreateQueue(apb.CreateQueueRequest(name="emails"), timeout=10)
        on_default = await ProtocolWorker(client, queues=("default",)).start()
        [email_job] = await _submit(client, 1, queue_name="emails")
        assert await on_default.nothing_more(0.7)
        on_emails = await ProtocolWorker(client, queues=("emails",)).start()
        [got] = await on_emails.take(1)
        assert got.job_id == email_job
        assert got.queue_name == "emails"
        await on_default.close()
        await on_emails.close()


async def test_never_more_in_flight_than_the_worker_concurrency(db_dsn: str) -> None:
    async with running_server(db_dsn) as (_, client):
        await _submit(client, 5)
        worker = await ProtocolWorker(client, concurrency=2).start()
        first = await worker.take(2)
        assert await worker.nothing_more(0.7)
        await worker.run(first[:1])  # a finished job frees exactly one slot
        [third] = await worker.take(1)
        assert await worker.nothing_more(0.5)
        await worker.run([first[1], third])
        rest = await worker.take(2)
        assert len({a.job_id for a in [*first, third, *rest]}) == 5
        await worker.close()


async def test_a_submit_wakes_the_dispatcher_at_once(db_dsn: str) -> None:
    # A one-minute fallback interval: only the wake-up can deliver the job in time.
    async with running_server(db_dsn, {"scheduler.interval_ms": 60_000}) as (_, client):
        worker = await ProtocolWorker(client).start()
        assert await worker.nothing_more(0.3)
        [job_id] = await _submit(client)
        [got] = await worker.take(1, within=3)
        assert got.job_id == job_id
        await worker.close()


async def test_a_submit_on_another_replica_wakes_this_one(db_dsn: str) -> None:
    slow = {"scheduler.interval_ms": 60_000}
    async with running_server(db_dsn, slow) as (_, a), running_server(db_dsn, slow) as (_, b):
        worker = await ProtocolWorker(a).start()
        assert await worker.nothing_more(0.3)
        [job_id] = await _submit(b)  # LISTEN/NOTIFY carries the wake-up across replicas
        [got] = await worker.take(1, within=3)
        assert got.job_id == job_id
        await worker.close()


async def test_a_submit_notifies_other_replicas_only_when_this_one_cannot_take_it(
    db_dsn: str,
) -> None:
    seen: list[object] = []
    listener = await asyncpg.connect(db_dsn)  # stands for another replica's notifier
    await listener.add_listener("jobq_jobs", lambda *args: seen.append(args))
    try:
        async with running_server(db_dsn) as (_, client):
            await _submit(client)  # no worker here: the other replicas must hear of it
            async with asyncio.timeout(5):
                while not seen:
                    await asyncio.sleep(0.01)
            worker = await ProtocolWorker(client, concurrency=4).start()
            await worker.take(1)
            seen.clear()
            [job_id] = await _submit(client)  # this replica's worker has free slots
            [got] = await worker.take(1, within=3)
            assert got.job_id == job_id
            await asyncio.sleep(0.3)
            assert seen == []
            await worker.close()
    finally:
        await listener.close()
