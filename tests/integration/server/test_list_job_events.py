"""ListJobEvents over real gRPC against a real database: every job's lifecycle events oldest
first, paged by event id, the newest page, the job and queue filters, every bad input refused
(INVALID_ARGUMENT, nothing changed), and the read scope it needs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any

import asyncpg
import grpc
import pytest
from support.auth import Tokens, bearer
from support.payloads import job_payload
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, running_server

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
async def client(db_dsn: str) -> AsyncIterator[Client]:
    async with running_server(db_dsn) as (_, connected):
        yield connected


async def _list(client: Client, **fields: Any) -> jpb.ListJobEventsResponse:
    return await client.jobs.ListJobEvents(jpb.ListJobEventsRequest(**fields), timeout=5)


async def _ids(client: Client, **fields: Any) -> list[int]:
    return [event.id for event in (await _list(client, **fields)).events]


async def _submit(client: Client, count: int = 1, queue: str = "default") -> list[str]:
    reply = await client.jobs.SubmitJobs(
        jpb.SubmitJobsRequest(
            jobs=[
                jpb.SubmitJobRequest(queue_name=queue, payload=job_payload(n)) for n in range(count)
            ]
        ),
        timeout=30,
    )
    return list(reply.job_ids)


async def _rows(dsn: str) -> list[asyncpg.Record]:
    """job_events as PostgreSQL has them, in id order."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(
            "SELECT e.id, e.job_id::text AS job_id, j.queue_name, e.reason"
            " FROM job_events e JOIN jobs j USING (job_id) ORDER BY e.id"
        )
    finally:
        await conn.close()


async def _counts(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        jobs: int = await conn.fetchval("SELECT count(*) FROM jobs")
        events: int = await conn.fetchval("SELECT count(*) FROM job_events")
    finally:
        await conn.close()
    return jobs, events


async def _fails(call: Awaitable[Any], code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is code, caught.value.details()
    details = caught.value.details() or ""
    assert "Traceback" not in details
    return details


async def _a_job_run_to_done(client: Client) -> str:
    """One job submitted, assigned, started and completed: four events."""
    worker = await ProtocolWorker(client, concurrency=1).start()
    try:
        [job_id] = await _submit(client)
        [assignment] = await worker.take(1, within=10)
        await worker.run([assignment])
    finally:
        await worker.close()
    return job_id


async def _unserved(client: Client) -> str:
    """A queue no worker serves, for jobs submitted after _a_job_run_to_done: the server may not
    have seen that worker's stream close yet, and a job offered to it then comes back with two
    more events (ASSIGNED, PENDING)."""
    await client.admin.CreateQueue(apb.CreateQueueRequest(name="unserved"), timeout=5)
    return "unserved"


async def test_every_event_of_every_job_comes_oldest_first(client: Client, db_dsn: str) -> None:
    done = await _a_job_run_to_done(client)
    first, second = await _submit(client, 2, queue=await _unserved(client))
    rows = await _rows(db_dsn)
    assert len(rows) == 4 + 2

    reply = await _list(client)
    assert [e.id for e in reply.events] == [row["id"] for row in rows]
    assert [(e.job_id, e.queue_name, e.reason) for e in reply.events] == [
        (row["job_id"], row["queue_name"], row["reason"]) for row in rows
    ]
    assert [e.job_id for e in reply.events[4:]] == [first, second]
    assert reply.last_id == rows[-1]["id"]
    # The very messages GetJobLogs returns for each job, so both views agree.
    logs = await client.jobs.GetJobLogs(jpb.GetJobLogsRequest(job_id=done), timeout=5)
    assert [e for e in reply.events if e.job_id == done] == list(logs.events)
    assert [e.to_status for e in logs.events] == [
        cpb.JOB_STATUS_PENDING,
        cpb.JOB_STATUS_ASSIGNED,
        cpb.JOB_STATUS_RUNNING,
        cpb.JOB_STATUS_DONE,
    ]


async def test_after_id_pages_through_every_event_once(client: Client, db_dsn: str) -> None:
    await _submit(client, 5)
    everything = [row["id"] for row in await _rows(db_dsn)]

    pages: list[list[int]] = []
    after = 0
    while True:
        reply = await _list(client, after_id=after, limit=2)
        pages.append([e.id for e in reply.events])
        assert reply.last_id >= after
        if len(reply.events) < 2:
            break
        assert reply.last_id == reply.events[-1].id  # a full page: go on right after it
        after = reply.last_id
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [i for page in pages for i in page] == everything
    assert reply.last_id == everything[-1]

    assert await _ids(client, after_id=everything[-1]) == []
    assert (await _list(client, after_id=everything[-1])).last_id == everything[-1]
    assert await _ids(client, after_id=everything[1]) == everything[2:]
    # Past the newest id: nothing, and never a last_id below what was asked.
    assert (await _list(client, after_id=10**12)).last_id == 10**12


async def test_newest_gives_the_last_events_still_oldest_first(client: Client, db_dsn: str) -> None:
    await _submit(client, 6)
    everything = [row["id"] for row in await _rows(db_dsn)]

    reply = await _list(client, newest=True, limit=3)
    assert [e.id for e in reply.events] == everything[-3:]
    assert reply.last_id == everything[-1]
    assert await _ids(client, newest=True, limit=100) == everything
    # With after_id: the last ones of those after it.
    assert await _ids(client, newest=True, limit=3, after_id=everything[-2]) == everything[-1:]
    assert await _ids(client, newest=False, limit=3) == everything[:3]


async def test_limit_defaults_to_100_and_stops_at_1000(client: Client) -> None:
    await _submit(client, 1000)
    await _submit(client, 5)
    assert len(await _ids(client)) == 100
    assert len(await _ids(client, limit=5000)) == 1000
    assert len(await _ids(client, limit=1000, newest=True)) == 1000
    assert len(await _ids(client, limit=7)) == 7


async def test_the_job_filter_gives_one_jobs_events(client: Client) -> None:
    done = await _a_job_run_to_done(client)
    [other] = await _submit(client, queue=await _unserved(client))

    reply = await _list(client, job_id=done)
    assert [e.job_id for e in reply.events] == [done] * 4
    assert [e.reason for e in reply.events] == ["SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED"]
    ids = [e.id for e in reply.events]
    assert ids == sorted(ids)
    # Its paging and newest work as without a filter.
    assert await _ids(client, job_id=done, limit=2) == ids[:2]
    assert await _ids(client, job_id=done, limit=2, newest=True) == ids[2:]
    assert await _ids(client, job_id=done, after_id=ids[1]) == ids[2:]
    assert [e.job_id for e in (await _list(client, job_id=other)).events] == [other]
    # An id in another spelling is the same job.
    assert await _ids(client, job_id=done.upper()) == ids

    unknown = await _list(client, job_id=UNKNOWN_ID)
    assert list(unknown.events) == []
    assert unknown.last_id == (await _list(client, newest=True, limit=1)).events[-1].id


async def test_the_queue_filter_gives_one_queues_events(client: Client) -> None:
    await client.admin.CreateQueue(apb.CreateQueueRequest(name="side"), timeout=5)
    before = await _submit(client, 2)
    side = await _submit(client, 2, queue="side")
    after = await _submit(client, 1)

    reply = await _list(client, queue_name="side")
    assert [e.job_id for e in reply.events] == side
    assert {e.queue_name for e in reply.events} == {"side"}
    assert [e.job_id for e in (await _list(client, queue_name="default")).events] == (
        before + after
    )
    # A quiet queue's reader goes on from the newest id, not from its last event: nothing
    # before it is scanned again.
    newest = (await _list(client, newest=True, limit=1)).events[-1].id
    assert reply.last_id == newest
    assert await _ids(client, queue_name="side", newest=True, limit=1) == [reply.events[-1].id]
    assert await _ids(client, queue_name="nobody-uses-this") == []
    # Job and queue together: both must hold.
    assert await _ids(client, job_id=side[0], queue_name="default") == []
    assert len(await _ids(client, job_id=side[0], queue_name="side")) == 1


async def test_an_event_that_commits_late_is_found_again_from_before_last_id(
    client: Client, db_dsn: str
) -> None:
    """Ids are taken when a row is written, not when it commits: the reason a follower asks
    again from a little before last_id (jq-ctl events tail --follow)."""
    [job_id] = await _submit(client)
    slow, fast = await asyncpg.connect(db_dsn), await asyncpg.connect(db_dsn)
    insert = (
        "INSERT INTO job_events (job_id, from_status, to_status, reason)"
        " VALUES ($1::uuid, 'PENDING', 'PENDING', 'MANUAL_RETRY') RETURNING id"
    )
    try:
        open_transaction = slow.transaction()
        await open_transaction.start()
        late: int = await slow.fetchval(insert, job_id)
        early: int = await fast.fetchval(insert, job_id)
        assert late < early

        seen = await _list(client)
        assert seen.events[-1].id == early
        assert late not in [e.id for e in seen.events]
        await open_transaction.commit()
        assert await _ids(client, after_id=seen.last_id) == []  # gone for a naive follower
        assert late in await _ids(client, after_id=max(0, seen.last_id - 1000))
    finally:
        await slow.close()
        await fast.close()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"job_id": "not-a-uuid"}, "malformed job id 'not-a-uuid': expected a UUID"),
        ({"job_id": "x" * 100}, "malformed job id: expected a UUID"),
        ({"queue_name": "no spaces"}, "invalid queue name 'no spaces'"),
        ({"queue_name": "q" * 129}, "invalid queue name"),
        ({"after_id": -1}, "after_id must not be negative, got -1"),
        ({"limit": -5}, "limit must not be negative, got -5"),
    ],
)
async def test_bad_input_is_invalid_argument_and_changes_nothing(
    client: Client, db_dsn: str, fields: dict[str, Any], message: str
) -> None:
    await _submit(client, 2)
    before = await _counts(db_dsn)
    details = await _fails(client.jobs.ListJobEvents(jpb.ListJobEventsRequest(**fields)), INVALID)
    assert message in details
    assert await _counts(db_dsn) == before


async def test_it_needs_the_read_scope(db_dsn: str) -> None:
    tokens = Tokens.new()
    async with running_server(db_dsn, tokens.settings()) as (_, client):
        await _submit_as(client, tokens.everything)
        request = jpb.ListJobEventsRequest()
        for scope in ("submit", "worker", "admin"):
            secret = next(t for s, t in tokens.by_scope.items() if s.value == scope)
            denied = await _fails(
                client.jobs.ListJobEvents(request, metadata=bearer(secret), timeout=5),
                grpc.StatusCode.PERMISSION_DENIED,
            )
            assert f"token '{scope}' lacks the read scope" in denied
            assert "ListJobEvents" in denied
        await _fails(client.jobs.ListJobEvents(request, timeout=5), grpc.StatusCode.UNAUTHENTICATED)
        reader = next(t for s, t in tokens.by_scope.items() if s.value == "read")
        reply = await client.jobs.ListJobEvents(request, metadata=bearer(reader), timeout=5)
        assert [e.reason for e in reply.events] == ["SUBMITTED"]


async def _submit_as(client: Client, secret: str) -> None:
    await client.jobs.SubmitJob(
        jpb.SubmitJobRequest(queue_name="default", payload=job_payload()),
        metadata=bearer(secret),
        timeout=5,
    )
