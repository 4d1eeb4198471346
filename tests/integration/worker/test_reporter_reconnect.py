"""The reporter over real grpc.aio channels: a channel closed while a report is in flight (as
the runtime closes it when heartbeats fail) does not end the reporter; the report is delivered
over the next channel."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from support.fake_worker_service import FakeWorkerService, start_fake_server

from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.worker.connection import PLAINTEXT, connect
from jobq.worker.reporter import PendingResult, Reporter

# Nothing here reaches a PostgreSQL of the tests' choosing (none, or make run's embedded
# one): `make test` runs it, `make test-system-pg` leaves it out (tests/conftest.py).
pytestmark = pytest.mark.postgres_independent


class StallingService(FakeWorkerService):
    """Its first ReportResults never answers, like a server frozen by SIGSTOP."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = asyncio.Event()

    async def ReportResults(
        self, request: pb.ReportResultsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportResultsResponse:
        if not self.stalled.is_set():
            self.stalled.set()
            await asyncio.Event().wait()
        return await super().ReportResults(request, context)


async def test_a_report_in_flight_when_the_channel_closes_is_delivered_after_reconnecting() -> None:
    service = StallingService()
    server, port = await start_fake_server(service)
    reporter = Reporter()
    reporter.on_ack_rejected(lambda outcome: None)
    task = asyncio.create_task(reporter.run())
    first, stub = connect(f"127.0.0.1:{port}", PLAINTEXT)
    second, second_stub = connect(f"127.0.0.1:{port}", PLAINTEXT)
    try:
        reporter.connected(stub, "w")
        delivered = reporter.result(PendingResult("job-1", 1, pb.JOB_OUTCOME_SUCCEEDED, b"out", ""))
        await asyncio.wait_for(service.stalled.wait(), 10)
        reporter.disconnected()  # what the runtime does when a session ends ...
        await first.close()  # ... then it closes the channel: grpc cancels the call
        await asyncio.sleep(0.05)
        assert not task.done(), f"the reporter ended: {task}"
        reporter.connected(second_stub, "w")
        await asyncio.wait_for(delivered, 10)
        [result] = service.results
        assert (result.job_id, result.attempt, result.result) == ("job-1", 1, b"out")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await second.close()
        await server.stop(None)
