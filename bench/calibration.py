"""How fast this machine is, so figures from different machines can be compared.

Machines of the same kind differ by a factor of two or more in single-thread speed (seen on
this project's development machines), which moves every figure of the benchmark. Two yardsticks
are measured next to jobq's figures:

- `python_loop_10m_s`: seconds for ten million additions in a Python loop (CPU speed as Python
  code sees it);
- `bare_grpc_unary_per_s`: unary calls per second between a grpc.aio server that answers
  SubmitJob at once, doing nothing else, and a grpc.aio client with the same calls in flight as
  the single-submit scenario. No Python gRPC server built on grpc.aio can beat this, so
  `submit_single_jobs_per_s` is best read as a fraction of it. With it come the CPU
  microseconds per call of that server and of that client (`bare_grpc_server_us_per_call`,
  `bare_grpc_client_us_per_call`): the floor of what one call costs before any work is done.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass

import grpc
import psutil

from bench.processes import cpu_seconds
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import job_service_pb2_grpc

_REPLY = jpb.SubmitJobResponse(job_id="01900000-0000-7000-8000-000000000000")
_PAYLOAD = b'{"handler": "bench.handlers:noop"}'


def python_loop_seconds() -> float:
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - started


class _InstantJobService(job_service_pb2_grpc.JobServiceServicer):
    async def SubmitJob(
        self, request: jpb.SubmitJobRequest, context: object
    ) -> jpb.SubmitJobResponse:
        return _REPLY


def _serve(port: int) -> None:
    async def run() -> None:
        server = grpc.aio.server()
        job_service_pb2_grpc.add_JobServiceServicer_to_server(_InstantJobService(), server)  # type: ignore[no-untyped-call]
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(run())


@dataclass(frozen=True)
class BareGrpc:
    calls_per_s: float
    server_us_per_call: float
    client_us_per_call: float


async def _measure(port: int, server_pid: int, count: int, in_flight: int) -> BareGrpc:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = job_service_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
    limit = asyncio.Semaphore(in_flight)
    request = jpb.SubmitJobRequest(queue_name="bench", payload=_PAYLOAD)

    async def one() -> None:
        async with limit:
            await stub.SubmitJob(request, timeout=30)

    try:
        async with asyncio.timeout(60):
            while True:  # until the server answers
                try:
                    await one()
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.05)
        await asyncio.gather(*(one() for _ in range(min(count, 500))))  # warm up
        server, client = psutil.Process(server_pid), psutil.Process()
        server_before, client_before = cpu_seconds([server]), cpu_seconds([client])
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        elapsed = time.perf_counter() - started
        return BareGrpc(
            calls_per_s=count / elapsed,
            server_us_per_call=(cpu_seconds([server]) - server_before) / count * 1e6,
            client_us_per_call=(cpu_seconds([client]) - client_before) / count * 1e6,
        )
    finally:
        await channel.close()


async def bare_grpc_unary(port: int, count: int, in_flight: int) -> BareGrpc:
    # A separate process, as jq-server is: client and server must not share a GIL.
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
    process.start()
    try:
        assert process.pid is not None
        return await _measure(port, process.pid, count, in_flight)
    finally:
        process.kill()
        process.join(timeout=10)
