"""Bad input is refused at submit (INVALID_ARGUMENT naming the field) and writes nothing; an
oversized request is refused with a message that names the limits."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import grpc
import pytest
from support.payloads import job_payload
from support.server_harness import Client, running_server

from jobq.rpc._gen import job_service_pb2 as jpb

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def _jobs(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM jobs")
    finally:
        await conn.close()
    return count


async def _refused(client: Client, request: jpb.SubmitJobRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.jobs.SubmitJob(request, timeout=5)
    return caught.value


@pytest.mark.parametrize(
    ("payload", "mentions"),
    [
        (b"not json", "payload is not valid JSON"),
        (b"", "payload is not valid JSON"),
        (b"[1, 2]", 'expected an object with "command" or "handler"'),
        ({"command": []}, '"command" must be a non-empty list of strings'),
        ({"command": "id"}, '"command" must be a non-empty list of strings'),
        ({"command": ["echo", 5]}, '"command"[1] must be a string'),
        ({"command": ["true"], "timeout_s": -5}, '"timeout_s" must be a positive number'),
        ({"command": ["true"], "timeout_s": 1e9}, '"timeout_s" must be at most'),
        ({"command": ["true"], "env": {"A": 1}}, "\"env\"['A'] must be a string"),
        ({"command": ["true"], "env": ["A=1"]}, '"env" must be an object of strings'),
        ({"command": ["env"], "env": {"LD_PRELOAD": "/tmp/x.so"}}, '"env" may not set LD_PRELOAD'),
        ({"command": ["sh"], "env": {"BASH_ENV": "/tmp/x"}}, '"env" may not set BASH_ENV'),
        ({"command": ["true"], "handler": "a:b"}, 'expected an object with "command" or "handler"'),
        ({"handler": ""}, '"handler" must be a non-empty string'),
        ({"handler": "a:b", "args": {}}, '"args" must be a list'),
        ({"command": ["true"], "timeout": 5}, "unknown field(s) in command payload: 'timeout'"),
    ],
)
async def test_a_malformed_payload_is_refused_at_submit(
    db_dsn: str, payload: Any, mentions: str
) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    async with running_server(db_dsn) as (_, client):
        error = await _refused(client, jpb.SubmitJobRequest(queue_name="default", payload=body))
        batch = jpb.SubmitJobsRequest(
            jobs=[
                jpb.SubmitJobRequest(queue_name="default", payload=job_payload()),
                jpb.SubmitJobRequest(queue_name="default", payload=body),
            ]
        )
        with pytest.raises(grpc.aio.AioRpcError) as batch_error:
            await client.jobs.SubmitJobs(batch, timeout=5)
    assert error.code() is INVALID
    assert mentions in (error.details() or ""), error.details()
    assert batch_error.value.code() is INVALID
    assert (batch_error.value.details() or "").startswith("job 1: payload")
    assert await _jobs(db_dsn) == 0


async def test_an_empty_queue_name_is_an_error_not_the_default_queue(db_dsn: str) -> None:
    async with running_server(db_dsn) as (_, client):
        error = await _refused(client, jpb.SubmitJobRequest(payload=job_payload()))
    assert error.code() is INVALID
    assert "queue_name is required" in (error.details() or "")
    assert await _jobs(db_dsn) == 0


async def test_an_oversized_request_names_the_limits(db_dsn: str) -> None:
    limits = {"grpc.max_message_bytes": 64 * 1024, "limits.max_payload_bytes": 16 * 1024}
    async with running_server(db_dsn, limits) as (_, client):
        over_payload = await _refused(
            client,
            jpb.SubmitJobRequest(queue_name="default", payload=job_payload("x" * 20 * 1024)),
        )
        over_message = await _refused(
            client,
            jpb.SubmitJobRequest(queue_name="default", payload=job_payload("x" * 100 * 1024)),
        )
    assert over_payload.code() is INVALID
    assert "the limit is 16384 bytes" in (over_payload.details() or "")
    assert over_message.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details = over_message.details() or ""
    assert "65536 bytes (grpc.max_message_bytes)" in details
    assert "16384 bytes (limits.max_payload_bytes)" in details
    assert await _jobs(db_dsn) == 0
