"""AsyncClient's submit stream against scripted gRPC servers (real gRPC on loopback, a servicer
the test writes): a batch answered UNAVAILABLE and a stream that breaks are retried with the
same idempotency keys on a new stream, and a server without the stream is used through
SubmitJobs. The real server's side: tests/integration/server/test_submit_stream.py and
tests/e2e/test_sdk_submit_stream.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import grpc
import pytest

from jobq.client import AsyncClient, CallFailed
from jobq.client.retry import RetryPolicy
from jobq.rpc._gen import job_service_pb2 as jpb

FAST = RetryPolicy(attempts=3, initial_backoff_s=0.0, max_backoff_s=0.0)
SERVICE = "jobq.v1.JobService"


class Script:
    """What the scripted server saw: every batch's identities (job id, else key)."""

    def __init__(self) -> None:
        self.streams = 0
        self.stream_batches: list[list[str]] = []
        self.unary_batches: list[list[str]] = []


def identity(job: jpb.SubmitJobRequest) -> str:
    """What makes a retry of the job safe: the client's job id, or else its key (never both)."""
    assert not (job.job_id and job.idempotency_key)
    assert job.job_id or job.idempotency_key
    return job.job_id or job.idempotency_key


def _answer(request: jpb.SubmitJobStreamRequest, code: int = 0) -> jpb.SubmitJobStreamResponse:
    if code:
        return jpb.SubmitJobStreamResponse(tag=request.tag, code=code, message="scripted")
    return jpb.SubmitJobStreamResponse(
        tag=request.tag,
        job_ids=[f"id-{identity(job)}" for job in request.jobs],
        existing=[False] * len(request.jobs),
    )


@asynccontextmanager
async def scripted_server(
    stream: Callable[[Script, Any, Any], Any] | None,
) -> AsyncIterator[tuple[str, Script]]:
    script = Script()

    async def submit_jobs(request: jpb.SubmitJobsRequest, context: Any) -> jpb.SubmitJobsResponse:
        keys = [job.idempotency_key for job in request.jobs]
        assert not any(job.job_id for job in request.jobs)  # a server of before job ids
        script.unary_batches.append(keys)
        return jpb.SubmitJobsResponse(
            job_ids=[f"id-{k}" for k in keys], existing=[False] * len(keys)
        )

    handlers: dict[str, grpc.RpcMethodHandler] = {
        "SubmitJobs": grpc.unary_unary_rpc_method_handler(
            submit_jobs,
            request_deserializer=jpb.SubmitJobsRequest.FromString,
            response_serializer=jpb.SubmitJobsResponse.SerializeToString,
        )
    }
    if stream is not None:

        async def submit_stream(requests: Any, context: Any) -> None:
            script.streams += 1
            await stream(script, requests, context)

        handlers["SubmitJobStream"] = grpc.stream_stream_rpc_method_handler(
            submit_stream,
            request_deserializer=jpb.SubmitJobStreamRequest.FromString,
            response_serializer=jpb.SubmitJobStreamResponse.SerializeToString,
        )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", script
    finally:
        await server.stop(0)


async def submit_three(address: str) -> list[str]:
    async with AsyncClient(address, timeout_s=5, retry=FAST) as client:
        jobs = await asyncio.gather(*(client.submit("h", n) for n in range(3)))
        return [job.id for job in jobs]


async def test_batches_go_over_one_stream() -> None:
    async def answer_all(script: Script, requests: Any, context: Any) -> None:
        async for request in requests:
            script.stream_batches.append([job.job_id for job in request.jobs])
            await context.write(_answer(request))

    async with (
        scripted_server(answer_all) as (address, script),
        AsyncClient(address, timeout_s=5, retry=FAST) as client,
    ):
        for _ in range(3):
            jobs = await asyncio.gather(*(client.submit("h", n) for n in range(4)))
            assert [job.id for job in jobs] == [f"id-{k}" for k in script.stream_batches[-1]]
    assert script.streams == 1
    assert [len(keys) for keys in script.stream_batches] == [4, 4, 4]
    assert script.unary_batches == []


async def test_a_batch_answered_unavailable_is_sent_again_with_its_keys() -> None:
    async def first_unavailable(script: Script, requests: Any, context: Any) -> None:
        async for request in requests:
            script.stream_batches.append([job.job_id for job in request.jobs])
            code = grpc.StatusCode.UNAVAILABLE.value[0] if len(script.stream_batches) == 1 else 0
            await context.write(_answer(request, code))

    async with scripted_server(first_unavailable) as (address, script):
        ids = await submit_three(address)
    first, again = script.stream_batches
    assert first == again
    assert ids == [f"id-{k}" for k in first]
    assert script.streams == 1


async def test_a_batch_refused_for_good_is_not_sent_again() -> None:
    async def permission_denied(script: Script, requests: Any, context: Any) -> None:
        async for request in requests:
            script.stream_batches.append([job.job_id for job in request.jobs])
            await context.write(_answer(request, grpc.StatusCode.PERMISSION_DENIED.value[0]))

    async with scripted_server(permission_denied) as (address, script):
        with pytest.raises(CallFailed, match="PERMISSION_DENIED: scripted") as refused:
            await submit_three(address)
    assert refused.value.code == "PERMISSION_DENIED"
    assert len(script.stream_batches) == 1


async def test_a_broken_stream_is_reopened_and_its_batch_sent_again() -> None:
    async def break_first(script: Script, requests: Any, context: Any) -> None:
        async for request in requests:
            script.stream_batches.append([job.job_id for job in request.jobs])
            if script.streams == 1:  # the first stream dies without answering
                await context.abort(grpc.StatusCode.UNAVAILABLE, "going away")
            await context.write(_answer(request))

    async with scripted_server(break_first) as (address, script):
        ids = await submit_three(address)
    first, again = script.stream_batches
    assert first == again
    assert ids == [f"id-{k}" for k in first]
    assert script.streams == 2


async def test_a_server_without_the_stream_gets_submit_jobs_calls() -> None:
    async with (
        scripted_server(None) as (address, script),
        AsyncClient(address, timeout_s=5, retry=FAST) as client,
    ):
        for _ in range(2):
            jobs = await asyncio.gather(*(client.submit("h", n) for n in range(3)))
            assert [job.id for job in jobs] == [f"id-{k}" for k in script.unary_batches[-1]]
        assert not client._stream.supported
    assert [len(keys) for keys in script.unary_batches] == [3, 3]


async def test_stream_jobs_carry_fresh_uuid7_ids_and_no_keys() -> None:
    async def answer_all(script: Script, requests: Any, context: Any) -> None:
        async for request in requests:
            assert not any(job.idempotency_key for job in request.jobs)
            script.stream_batches.append([job.job_id for job in request.jobs])
            await context.write(_answer(request))

    async with scripted_server(answer_all) as (address, script):
        await submit_three(address)
        await submit_three(address)
    ids = [UUID(job_id) for keys in script.stream_batches for job_id in keys]
    assert len(ids) == len(set(ids)) == 6
    assert {job_id.version for job_id in ids} == {7}


async def test_a_server_that_answered_on_the_stream_is_not_left_for_submit_jobs() -> None:
    # After an answer, UNIMPLEMENTED means an older server replaced this one; batches in flight
    # may have committed under their ids, which it would ignore: retry, never switch.
    async def unimplemented_once(script: Script, requests: Any, context: Any) -> None:
        async for request in requests:
            script.stream_batches.append([job.job_id for job in request.jobs])
            if len(script.stream_batches) == 2:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "older server")
            await context.write(_answer(request))

    async with (
        scripted_server(unimplemented_once) as (address, script),
        AsyncClient(address, timeout_s=5, retry=FAST) as client,
    ):
        first = await asyncio.gather(*(client.submit("h", n) for n in range(2)))
        second = await asyncio.gather(*(client.submit("h", n) for n in range(2)))
        assert client._stream.supported
    assert script.unary_batches == []
    assert script.stream_batches[1] == script.stream_batches[2]  # sent again, same ids
    assert [job.id for job in second] == [f"id-{k}" for k in script.stream_batches[2]]
    assert len({job.id for job in first + second}) == 4
