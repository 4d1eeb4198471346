"""Demand-driven dispatch over real gRPC against a real PostgreSQL (SPEC §6)."""

from __future__ import annotations

import asyncio

import asyncpg
from google.protobuf.duration_pb2 import Duration
from support.payloads import job_payload
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, running_server

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
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
    # A one-minute fallback interval: only the wake-up can deliver the job in time (and no
    # assignment at the submit, which would deliver it without the dispatcher's cycle).
    settings = {"scheduler.interval_ms": 60_000, "scheduler.assign_at_submit": False}
    async with running_server(db_dsn, settings) as (_, client):
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


async def _transactions_of_events(db_dsn: str, job_id: str) -> list[tuple[str, int]]:
    """Each of the job's events (reason) with the transaction that wrote it (xmin)."""
    conn = await asyncpg.connect(db_dsn)
    try:
        rows = await conn.fetch(
            "SELECT reason, xmin::text::bigint AS tx FROM job_events"
            " WHERE job_id = $1::uuid ORDER BY id",
            job_id,
        )
    finally:
        await conn.close()
    return [(row["reason"], row["tx"]) for row in rows]


async def test_a_lone_submit_is_assigned_by_its_own_insert(db_dsn: str) -> None:
    """scheduler.assign_at_submit (the default): a worker connected here with a free slot gets
    the job from the submit's own statement, not from a dispatcher cycle after it."""
    async with running_server(db_dsn, {"scheduler.interval_ms": 60_000}) as (_, client):
        worker = await ProtocolWorker(client, concurrency=2).start()
        assert await worker.nothing_more(0.3)
        [job_id] = await _submit(client)
        [got] = await worker.take(1, within=3)
        assert got.job_id == job_id
        assert (got.attempt, got.worker_id) == (1, worker.worker_id)
        events = await _transactions_of_events(db_dsn, job_id)
        assert [reason for reason, _ in events] == ["SUBMITTED", "ASSIGNED"]
        assert events[0][1] == events[1][1]  # one transaction wrote both
        await worker.run([got])  # fenced like any claim: its start and result are accepted
        status = await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id))
        assert status.job.status == cpb.JOB_STATUS_DONE
        await worker.close()


async def test_with_assignment_at_submit_off_the_claim_assigns_it(db_dsn: str) -> None:
    async with running_server(db_dsn, {"scheduler.assign_at_submit": False}) as (_, client):
        worker = await ProtocolWorker(client).start()
        [job_id] = await _submit(client)
        [got] = await worker.take(1, within=3)
        assert got.job_id == job_id
        events = await _transactions_of_events(db_dsn, job_id)
        assert [reason for reason, _ in events] == ["SUBMITTED", "ASSIGNED"]
        assert events[0][1] != events[1][1]  # the submit's, then the claim's
        await worker.close()
