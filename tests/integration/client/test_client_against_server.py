"""jobq.Client and jobq.AsyncClient against a real in-process jq-server; results come from a
ProtocolWorker that reports them as jq-worker would (a handler's JSON return value)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client as Stubs
from support.server_harness import running_server

import jobq
from jobq.client import (
    AsyncClient,
    CallFailed,
    Client,
    JobCancelled,
    JobFailed,
    JobStatus,
    SubmitManyFailed,
    handler_job,
)
from jobq.rpc._gen import worker_service_pb2 as wpb


@pytest.fixture
async def server(db_dsn: str) -> AsyncIterator[tuple[str, Stubs]]:
    async with running_server(db_dsn, {"limits.max_batch_size": 5}) as (app, stubs):
        yield f"127.0.0.1:{app.grpc_port}", stubs


async def test_async_submit_wait_and_result(server: tuple[str, Stubs]) -> None:
    address, stubs = server
    worker = await ProtocolWorker(stubs).start()
    async with AsyncClient(address, timeout_s=10) as client:
        job = await client.submit("jobq.demo_tasks:add", 2, 3, queue="default", priority=5)
        waiting = asyncio.create_task(job.result(timeout=30))
        [assignment] = await worker.take(1)
        assert json.loads(assignment.payload) == {"handler": "jobq.demo_tasks:add", "args": [2, 3]}
        await worker.ack([assignment])
        await worker.report(assignment, result=b"5")
        assert await waiting == 5
        info = await job.info()
        assert info.status is JobStatus.DONE
        assert info.priority == 5
        assert next(e.reason for e in await job.logs()) == "SUBMITTED"
    await worker.close()


async def test_many_waiters_share_watch_calls(server: tuple[str, Stubs]) -> None:
    address, stubs = server
    worker = await ProtocolWorker(stubs, concurrency=50).start()
    async with AsyncClient(address) as client:
        jobs = await asyncio.gather(*(client.submit("h", n) for n in range(30)))
        waits = [asyncio.create_task(job.result(timeout=30)) for job in jobs]
        await asyncio.sleep(0.05)
        assert client._watches.open_calls == 1  # 30 waits, one WatchJobs call
        assignments = await worker.take(30)
        await worker.ack(assignments)
        for assignment in assignments:
            [n] = json.loads(assignment.payload)["args"]
            await worker.report(assignment, result=json.dumps(n * 10).encode())
        assert await asyncio.gather(*waits) == [n * 10 for n in range(30)]
    await worker.close()


async def test_failed_and_cancelled_jobs_raise_with_their_message(
    server: tuple[str, Stubs],
) -> None:
    address, stubs = server
    worker = await ProtocolWorker(stubs).start()
    async with AsyncClient(address) as client:
        failing = await client.submit("h", max_retries=0)
        [assignment] = await worker.take(1)
        await worker.ack([assignment])
        await worker.report(assignment, wpb.JOB_OUTCOME_FAILED, error="ValueError: boom")
        with pytest.raises(JobFailed, match="ValueError: boom") as caught:
            await failing.result(timeout=30)
        assert caught.value.reason == "RETRIES_EXHAUSTED"

        later = await client.submit("h", delay=3600)
        await later.cancel()
        with pytest.raises(JobCancelled):
            await later.wait(timeout=30)
        retried = await later.retry()
        assert retried.status is JobStatus.PENDING
    await worker.close()


async def test_a_wait_times_out_and_an_unknown_job_fails_alone(server: tuple[str, Stubs]) -> None:
    address, _ = server
    async with AsyncClient(address) as client:
        job = await client.submit("h", delay=3600)
        with pytest.raises(TimeoutError):
            await job.wait(timeout=0.3)
        unknown = "00000000-0000-4000-8000-000000000000"
        cancelled = await client.submit("h", delay=3600)
        waits = asyncio.gather(
            client.wait(unknown, timeout=10),
            client.wait(cancelled.id, timeout=10),
            return_exceptions=True,
        )
        await asyncio.sleep(0.05)
        await cancelled.cancel()
        missing, ended = await waits
        assert isinstance(missing, CallFailed)
        assert missing.code == "NOT_FOUND"
        assert isinstance(ended, JobCancelled)


async def test_concurrent_submits_are_batched_and_a_bad_one_fails_alone(
    server: tuple[str, Stubs],
) -> None:
    address, _ = server
    async with AsyncClient(address, linger_s=0.02) as client:
        results = await asyncio.gather(
            *(
                client.submit("h", n, queue="nope" if n == 4 else "default")
                for n in range(12)  # more than the server's batch limit of 5
            ),
            return_exceptions=True,
        )
        failed = results.pop(4)
        assert isinstance(failed, CallFailed)
        assert failed.code == "NOT_FOUND"
        assert "nope" in failed.details
        ids = [job.id for job in results if isinstance(job, jobq.AsyncJob)]
        assert len(set(ids)) == 11
        listed = [job.job_id async for job in client.list(queue="default", page_size=3)]
        assert sorted(listed) == sorted(ids)


async def test_a_repeated_idempotency_key_creates_nothing(server: tuple[str, Stubs]) -> None:
    address, _ = server
    async with AsyncClient(address) as client:
        first = await client.submit("h", idempotency_key="order-7")
        second = await client.submit("h", idempotency_key="order-7")
        assert second.id == first.id
        assert second.existing
        assert not first.existing


async def test_a_concurrency_key_travels_with_the_job(server: tuple[str, Stubs]) -> None:
    address, _ = server
    async with AsyncClient(address) as client:
        job = await client.submit("h", 1, concurrency_key="customer-42")
        assert (await job.info()).concurrency_key == "customer-42"
        plain = await client.submit("h", 2)
        assert (await plain.info()).concurrency_key == ""
        with pytest.raises(jobq.client.InvalidJob, match="concurrency_key"):
            await client.submit("h", concurrency_key="x" * 256)
    sync_key = await asyncio.to_thread(_submit_with_key, address)
    assert sync_key == "tenant 7"


async def test_queues_are_paused_resumed_and_limited_from_the_sdk(
    server: tuple[str, Stubs],
) -> None:
    address, _ = server
    async with AsyncClient(address) as client:
        paused = await client.pause_queue("default")
        assert paused.paused
        limited = await client.set_queue_limits(
            "default", max_running=3, key_rate="10/1m", rate=(5, 0.5)
        )
        assert (limited.max_running, limited.key_max_running) == (3, None)
        assert str(limited.key_rate) == "10/1m"
        assert str(limited.rate) == "5/500ms"
        resumed = await client.resume_queue("default")
        assert not resumed.paused
        assert resumed.max_running == 3
        with pytest.raises(jobq.client.InvalidJob, match="period"):
            await client.set_queue_limits("default", rate="10/2y")
        with pytest.raises(jobq.client.InvalidJob, match="give"):
            await client.set_queue_limits("default")
        with pytest.raises(CallFailed) as missing:
            await client.pause_queue("nope")
        assert missing.value.code == "NOT_FOUND"
    cleared = await asyncio.to_thread(_clear_limits, address)
    assert (cleared.max_running, cleared.rate, cleared.key_rate) == (None, None, None)


def _clear_limits(address: str) -> jobq.client.QueueInfo:
    with Client(address) as client:
        return client.set_queue_limits("default", max_running=0, rate="0", key_rate=(0, 1))


def _submit_with_key(address: str) -> str:
    with Client(address) as client:
        job = client.submit_command(["true"], concurrency_key="tenant 7")
        return job.info().concurrency_key


def run_sync_client(address: str) -> None:
    with Client(address) as client:
        jobs = client.submit_many(handler_job("h", [n]) for n in range(12))
        assert len({job.id for job in jobs}) == 12  # 3 calls at the server's limit of 5
        with pytest.raises(SubmitManyFailed) as caught:
            client.submit_many(
                [handler_job("h"), handler_job("h", options=jobq.client.SubmitOptions(queue="x"))]
            )
        assert isinstance(caught.value.results[0], str)
        assert isinstance(caught.value.results[1], CallFailed)
        command = client.submit_command(["echo", "hi"], delay=3600)
        assert command.status() is JobStatus.PENDING
        assert len(list(client.list(limit=7, page_size=2))) == 7
        command.cancel()
        with pytest.raises(JobCancelled):
            command.result(timeout=30)
        with pytest.raises(TimeoutError):
            jobs[0].wait(timeout=0.3)


async def test_the_sync_client(server: tuple[str, Stubs]) -> None:
    address, _ = server
    await asyncio.to_thread(run_sync_client, address)


@jobq.task(name="client_test_scale")
def scale(x: int, factor: int = 2) -> int:
    return x * factor


def delay_through_default_client(address: str) -> tuple[str, str, str]:
    jobq.configure(address)
    try:
        job = scale.delay(21)
        other = scale.submit(1, factor=3, queue="default", priority=9)
        assert other.info().priority == 9
        return job.id, other.id, json.loads(job.info().payload)["handler"]
    finally:
        jobq.client.reset_default_client()


async def test_task_delay_uses_the_default_client(server: tuple[str, Stubs]) -> None:
    address, stubs = server
    job_id, other_id, handler = await asyncio.to_thread(delay_through_default_client, address)
    assert handler == "client_test_scale"
    worker = await ProtocolWorker(stubs).start()
    taken = {a.job_id: json.loads(a.payload) for a in await worker.take(2)}
    assert taken[job_id]["args"] == [21]
    assert "kwargs" not in taken[job_id]
    assert (taken[other_id]["args"], taken[other_id]["kwargs"]) == ([1], {"factor": 3})
    await worker.close()


async def test_a_job_submitted_after_others_runs_once_they_are_done(
    server: tuple[str, Stubs],
) -> None:
    address, stubs = server
    worker = await ProtocolWorker(stubs).start()
    async with AsyncClient(address, linger_s=0.01) as client:
        first = await client.submit("jobq.demo_tasks:add", 1, 1)
        second = await client.submit("jobq.demo_tasks:add", 2, 2)
        # through the batched stream, naming jobs and ids alike
        after = await client.submit("jobq.demo_tasks:add", 3, 3, depends_on=[first, second.id])
        info = await after.info()
        assert info.status is JobStatus.WAITING
        assert not info.ended
        assert sorted(info.depends_on) == sorted([first.id, second.id])
        assignments = await worker.take(2)
        assert {a.job_id for a in assignments} == {first.id, second.id}
        await worker.ack(assignments)
        for assignment in assignments:
            await worker.report(assignment, result=b"0")
        [last] = await worker.take(1)  # promoted once both are DONE
        assert last.job_id == after.id
        await worker.ack([last])
        await worker.report(last, result=b"6")
        assert await after.result(timeout=30) == 6
        events = [e.reason for e in await after.logs()]
        assert events[:2] == ["SUBMITTED", "DEPENDENCIES_MET"]
    await worker.close()
