"""Idempotency keys over gRPC: two clients racing the same keys against two server replicas get
one job per key, both told the same id, exactly one of them told it is new; bad keys are
refused and create nothing."""

from __future__ import annotations

import asyncio

import asyncpg
import grpc
import pytest
from support.payloads import job_payload
from support.server_harness import Client, client_for, running_server

from jobq.rpc._gen import job_service_pb2 as jpb

ROUNDS = 20


def _request(key: str, tag: str) -> jpb.SubmitJobRequest:
    return jpb.SubmitJobRequest(queue_name="default", payload=job_payload(tag), idempotency_key=key)


async def test_two_clients_racing_one_key_on_two_replicas_get_one_job(
    db_dsn: str, pool: asyncpg.Pool
) -> None:
    async with running_server(db_dsn) as (_, first), running_server(db_dsn) as (other, _):
        assert other.grpc_port is not None
        second = client_for(other.grpc_port)
        try:
            for round_ in range(ROUNDS):
                key = f"order-{round_}"
                a, b = await asyncio.gather(
                    first.jobs.SubmitJob(_request(key, "a"), timeout=10),
                    second.jobs.SubmitJob(_request(key, "b"), timeout=10),
                )
                assert a.job_id == b.job_id, key
                assert sorted([a.existing, b.existing]) == [False, True], key
            # Batches too, the same keys in opposite orders on the two replicas.
            keys = [f"batch-{i}" for i in range(50)]
            x, y = await asyncio.gather(
                first.jobs.SubmitJobs(
                    jpb.SubmitJobsRequest(jobs=[_request(k, "x") for k in keys]), timeout=10
                ),
                second.jobs.SubmitJobs(
                    jpb.SubmitJobsRequest(jobs=[_request(k, "y") for k in reversed(keys)]),
                    timeout=10,
                ),
            )
            assert list(x.job_ids) == list(reversed(y.job_ids))
            assert [a or b for a, b in zip(x.existing, reversed(y.existing), strict=True)] == [
                True
            ] * len(keys)
        finally:
            await second.channel.close()
    counts = await pool.fetch(
        "SELECT idempotency_key, count(*) AS n FROM jobs GROUP BY idempotency_key"
    )
    assert {row["idempotency_key"]: row["n"] for row in counts} == dict.fromkeys(
        [f"order-{r}" for r in range(ROUNDS)] + [f"batch-{i}" for i in range(50)], 1
    )
    events = await pool.fetchval("SELECT count(*) FROM job_events WHERE reason = 'SUBMITTED'")
    assert events == ROUNDS + 50


@pytest.mark.parametrize(
    ("key", "says"),
    [("k" * 256, "at most 255"), ("tab\there", "printable ASCII")],
)
async def test_a_bad_key_is_refused_and_creates_nothing(
    db_dsn: str, pool: asyncpg.Pool, key: str, says: str
) -> None:
    async with running_server(db_dsn) as (_, client):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.jobs.SubmitJob(_request(key, "bad"), timeout=5)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert says in (caught.value.details() or "")
        await _submits_nothing_in_a_batch(client, key)
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0


async def _submits_nothing_in_a_batch(client: Client, key: str) -> None:
    batch = jpb.SubmitJobsRequest(jobs=[_request("fine", "ok"), _request(key, "bad")])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.jobs.SubmitJobs(batch, timeout=5)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "job 1" in (caught.value.details() or "")
