"""SubmitJobStream against a real in-process jq-server: each batch is answered by its tag with
SubmitJobs' outcome, a refused batch leaves the stream open and creates nothing, and what breaks
the stream itself (a tag in flight twice, an oversized request) ends it with its status."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from support.server_harness import Client, running_server

from jobq.domain.ids import uuid7
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.server.submit_stream import STOPPING

PAYLOAD = json.dumps({"handler": "jobq.demo_tasks:add", "args": [1, 2]}).encode()


@pytest.fixture
async def stubs(db_dsn: str) -> AsyncIterator[Client]:
    overrides = {"limits.max_batch_size": 5, "grpc.max_message_bytes": 65_536}
    async with running_server(db_dsn, overrides) as (_, client):
        yield client


def batch(
    tag: int, count: int, queue: str = "default", key: str = ""
) -> jpb.SubmitJobStreamRequest:
    return jpb.SubmitJobStreamRequest(
        tag=tag,
        jobs=[
            jpb.SubmitJobRequest(
                queue_name=queue, payload=PAYLOAD, idempotency_key=f"{key}{i}" if key else ""
            )
            for i in range(count)
        ],
    )


async def job_rows(dsn: str) -> dict[str, list[str]]:
    """Each job's id → its events' reasons."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT j.job_id::text AS id, array_agg(e.reason ORDER BY e.id) AS reasons "
            "FROM jobs j LEFT JOIN job_events e USING (job_id) GROUP BY j.job_id"
        )
        return {row["id"]: list(row["reasons"]) for row in rows}
    finally:
        await conn.close()


async def read_all(call: Any, into: list[jpb.SubmitJobStreamResponse] | None = None) -> None:
    while (answer := await call.read()) is not grpc.aio.EOF:
        if into is not None:
            into.append(answer)


async def test_each_batch_is_answered_by_its_tag_and_a_refused_one_creates_nothing(
    stubs: Client, db_dsn: str
) -> None:
    requests = [
        batch(7, 3),
        batch(8, 2, queue="no-such-queue"),  # NOT_FOUND, as SubmitJobs
        jpb.SubmitJobStreamRequest(tag=9),  # no jobs
        batch(10, 6),  # over limits.max_batch_size (5)
        batch(11, 1, key="k-"),
        batch(12, 2, key="k-"),  # k-0 is held by tag 11's job: existing
    ]
    call = stubs.jobs.SubmitJobStream(iter(requests), timeout=10)
    received: list[jpb.SubmitJobStreamResponse] = []
    await read_all(call, received)
    answers = {answer.tag: answer for answer in received}
    assert await call.code() is grpc.StatusCode.OK
    assert sorted(answers) == [7, 8, 9, 10, 11, 12]

    ok = grpc.StatusCode.OK.value[0]
    assert answers[7].code == ok
    assert len(answers[7].job_ids) == 3
    assert list(answers[7].existing) == [False] * 3
    assert answers[8].code == grpc.StatusCode.NOT_FOUND.value[0]
    assert answers[8].message == "job 0: queue 'no-such-queue' not found"
    assert not answers[8].job_ids
    assert answers[9].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert answers[9].message == "a batch needs at least one job"
    assert answers[10].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert answers[10].message == "a batch holds at most 5 jobs, got 6"
    # Tags 11 and 12 race for key k-0 (up to 4 batches of a stream are inserted at once):
    # one creates its job, the other gets it back as existing.
    assert answers[11].code == ok
    assert answers[12].code == ok
    [eleven], (twelve, other) = answers[11].job_ids, answers[12].job_ids
    assert eleven == twelve
    assert [answers[11].existing[0], answers[12].existing[0]] in ([False, True], [True, False])
    assert answers[12].existing[1] is False
    held = eleven

    jobs = await job_rows(db_dsn)
    created = {*answers[7].job_ids, held, other}
    assert set(jobs) == created  # the refused batches wrote nothing
    assert all(reasons == ["SUBMITTED"] for reasons in jobs.values())


async def test_a_tag_still_in_flight_ends_the_stream(stubs: Client) -> None:
    # The second request arrives with the first (one write each, no wait): its tag is still in
    # flight while the first batch's insert runs.
    call = stubs.jobs.SubmitJobStream(timeout=10)
    await call.write(batch(1, 5))
    await call.write(batch(1, 5))
    await call.done_writing()
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await read_all(call)
    assert ended.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert ended.value.details() == (
        "tag 1 is already in flight on this stream: give each batch a tag no batch still "
        "waiting for its answer has"
    )


async def test_a_tag_may_come_again_once_answered(stubs: Client, db_dsn: str) -> None:
    call = stubs.jobs.SubmitJobStream(timeout=10)
    tags = []
    for _ in range(3):
        await call.write(batch(5, 2))
        answer = await call.read()
        assert isinstance(answer, jpb.SubmitJobStreamResponse)
        assert answer.code == 0
        tags.append(answer.tag)
    await call.done_writing()
    assert await call.code() is grpc.StatusCode.OK
    assert tags == [5, 5, 5]
    assert len(await job_rows(db_dsn)) == 6


async def test_an_oversized_request_ends_the_stream_with_the_limits(
    stubs: Client, db_dsn: str
) -> None:
    big = jpb.SubmitJobStreamRequest(
        tag=1, jobs=[jpb.SubmitJobRequest(queue_name="default", payload=b"x" * 70_000)]
    )
    call = stubs.jobs.SubmitJobStream(iter([batch(0, 1), big]), timeout=10)
    answers: list[jpb.SubmitJobStreamResponse] = []
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await read_all(call, answers)
    assert ended.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "jq-server accepts messages of at most 65536 bytes" in (ended.value.details() or "")
    assert [a.tag for a in answers] in ([], [0])  # the first batch may be answered first
    assert len(await job_rows(db_dsn)) <= 1


async def test_a_stopping_server_answers_what_it_read_then_ends_the_stream(db_dsn: str) -> None:
    async with running_server(db_dsn) as (app, client):
        call = client.jobs.SubmitJobStream(timeout=10)
        await call.write(batch(1, 2))
        answer = await call.read()
        assert isinstance(answer, jpb.SubmitJobStreamResponse)
        assert answer.code == 0
        stopping = asyncio.create_task(app.stop())
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await read_all(call)
        await stopping
    assert ended.value.code() is grpc.StatusCode.UNAVAILABLE
    assert ended.value.details() == STOPPING
    assert len(await job_rows(db_dsn)) == 2


async def test_a_batch_sent_again_with_its_client_ids_creates_nothing(
    stubs: Client, db_dsn: str
) -> None:
    ids = [str(uuid7()) for _ in range(3)]
    jobs = [jpb.SubmitJobRequest(queue_name="default", payload=PAYLOAD, job_id=i) for i in ids]
    sent = [jpb.SubmitJobStreamRequest(tag=t, jobs=jobs) for t in (1, 2)]
    call = stubs.jobs.SubmitJobStream(timeout=10)
    answers = []
    for request in sent:  # one after the other: the second is a retry of a committed first
        await call.write(request)
        answers.append(await call.read())
    await call.done_writing()
    first, again = answers
    assert list(first.job_ids) == list(again.job_ids) == ids
    assert list(first.existing) == [False] * 3
    assert list(again.existing) == [True] * 3
    # SubmitJob takes a client id too, and a bad one is refused.
    single = await stubs.jobs.SubmitJob(jobs[0], timeout=10)
    assert (single.job_id, single.existing) == (ids[0], True)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stubs.jobs.SubmitJob(
            jpb.SubmitJobRequest(queue_name="default", payload=PAYLOAD, job_id="7"), timeout=10
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    rows = await job_rows(db_dsn)
    assert sorted(rows) == sorted(ids)
    assert all(reasons == ["SUBMITTED"] for reasons in rows.values())
