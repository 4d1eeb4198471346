"""What submitting costs through the Python SDK (`jobq.Client`, `jobq.AsyncClient`), as an
application calls it: `client.submit("bench.handlers:noop", queue=...)` per job, with the
defaults (auto-batching on; `AsyncClient`: batches closed at the end of an event-loop pass and
sent on its SubmitJobStream call, a job id of its own per job; `Client`: a 1 ms linger,
SubmitJobs calls, a random idempotency key per job).

- one caller submitting in sequence, each submit awaited before the next: with the sync
  `Client` (one thread; a lone submit goes at once, no linger, as one SubmitJobs call) and
  with `AsyncClient` (one coroutine; one message of its SubmitJobStream call per submit). This
  is the floor an application sees, set beside pgqueuer's single enqueue
  (bench/peer_ratios.py);
- many callers at once, each in sequence (`AsyncClient` with one coroutine per caller, and the
  sync `Client` shared by one thread per caller): auto-batching coalesces what they submit
  within the linger into SubmitJobs calls. Compare with `submit_single_jobs_per_s` (raw
  SubmitJob calls, as many in flight): issue 15 asks for five times that;
- transactional enqueues (`jobq.enqueue` on the application's own asyncpg connection), one
  caller, each job in a transaction of its own (BEGIN, the enqueue's insert, COMMIT): what a
  job costs an application that writes it beside its own rows, a commit (an fsync) per job.

Every job goes into a queue of its own that no worker serves, so the drain that follows is
not disturbed (as for `submit_single`).
"""

from __future__ import annotations

import asyncio
import threading
import time

import asyncpg

import jobq
from bench.scenarios import create_queue
from jobq.client import ConnectionSettings

HANDLER = "bench.handlers:noop"


def _settings(port: int) -> ConnectionSettings:
    """This server, whatever JQ_CTL_* the benchmark's environment holds."""
    return ConnectionSettings(server_addr=f"127.0.0.1:{port}", timeout_s=30.0)


async def sequential(port: int, count: int, queue: str) -> float:
    """Jobs/s of `count` submits, one after the other, from one thread (sync `Client`)."""
    await create_queue(port, queue)
    return await asyncio.to_thread(_sequential, port, count, queue)


def _sequential(port: int, count: int, queue: str) -> float:
    with jobq.Client(settings=_settings(port)) as client:
        client.submit(HANDLER, queue=queue)  # connect before the clock starts
        started = time.perf_counter()
        for _ in range(count):
            client.submit(HANDLER, queue=queue)
        return count / (time.perf_counter() - started)


async def async_sequential(port: int, count: int, queue: str) -> float:
    """Jobs/s of `count` submits, each awaited before the next, from one coroutine
    (`AsyncClient`)."""
    await create_queue(port, queue)
    async with jobq.AsyncClient(settings=_settings(port)) as client:
        await client.submit(HANDLER, queue=queue)  # connect before the clock starts
        started = time.perf_counter()
        for _ in range(count):
            await client.submit(HANDLER, queue=queue)
        return count / (time.perf_counter() - started)


def _shares(count: int, callers: int) -> list[int]:
    """`count` jobs split between `callers` as evenly as can be."""
    return [count // callers + (1 if i < count % callers else 0) for i in range(callers)]


async def async_callers(port: int, count: int, callers: int, queue: str) -> float:
    """Jobs/s of `count` submits from `callers` coroutines of one `AsyncClient`, each
    submitting its share one after the other."""
    await create_queue(port, queue)
    async with jobq.AsyncClient(settings=_settings(port)) as client:
        await client.submit(HANDLER, queue=queue)  # connect before the clock starts

        async def caller(share: int) -> None:
            for _ in range(share):
                await client.submit(HANDLER, queue=queue)

        started = time.perf_counter()
        await asyncio.gather(*(caller(share) for share in _shares(count, callers)))
        return count / (time.perf_counter() - started)


async def thread_callers(port: int, count: int, callers: int, queue: str) -> float:
    """Jobs/s of `count` submits from `callers` threads sharing one sync `Client`, each
    submitting its share one after the other."""
    await create_queue(port, queue)
    return await asyncio.to_thread(_thread_callers, port, count, callers, queue)


def _thread_callers(port: int, count: int, callers: int, queue: str) -> float:
    with jobq.Client(settings=_settings(port)) as client:
        client.submit(HANDLER, queue=queue)  # connect before the clock starts
        ready = threading.Barrier(callers + 1)
        failures: list[BaseException] = []

        def caller(share: int) -> None:
            ready.wait()
            try:
                for _ in range(share):
                    client.submit(HANDLER, queue=queue)
            except BaseException as exc:  # reported by the measuring thread
                failures.append(exc)

        threads = [threading.Thread(target=caller, args=(s,)) for s in _shares(count, callers)]
        for thread in threads:
            thread.start()
        ready.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    return count / elapsed


async def transactional(dsn: str, port: int, count: int, queue: str) -> float:
    """Jobs/s of `count` transactional enqueues from one asyncpg connection, one after the
    other, each committed alone."""
    await create_queue(port, queue)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():  # the first statements are planned before the clock
            await jobq.enqueue(conn, HANDLER, queue=queue)
        started = time.perf_counter()
        for _ in range(count):
            async with conn.transaction():
                await jobq.enqueue(conn, HANDLER, queue=queue)
        return count / (time.perf_counter() - started)
    finally:
        await conn.close()
