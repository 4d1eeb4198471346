"""A stand-in jq-server for worker tests: a real grpc.aio server with a WorkerService that
records what each call carried (metadata, reports) and hands out the assignments a test
queues. It lets a test feed a real worker assignments the real server would refuse at submit,
and see exactly what the worker sends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.rpc._gen import worker_service_pb2_grpc


@dataclass
class CallRecord:
    method: str
    metadata: dict[str, str]
    peer_common_name: str | None = None


@dataclass
class FakeWorkerService(worker_service_pb2_grpc.WorkerServiceServicer):
    """Accepts every call; StreamJobBatches sends what `assign` queued."""

    calls: list[CallRecord] = field(default_factory=list)
    acks: list[pb.JobAttempt] = field(default_factory=list)
    results: list[pb.ReportResultRequest] = field(default_factory=list)
    heartbeat_timeout_s: float = 0.0
    """What RegisterWorker tells the worker (0: nothing, as a server before the field)."""
    deaf: bool = False
    """While set, RegisterWorker and Heartbeat never answer (a partition, a paused server);
    the open stream still delivers what `assign` queues."""
    _pending: asyncio.Queue[pb.JobAssignment] = field(default_factory=asyncio.Queue)
    _reported: asyncio.Event = field(default_factory=asyncio.Event)

    def assign(self, payload: bytes, *, job_id: str | None = None) -> str:
        """Queue one assignment (attempt 1) for the next open stream; returns its job id."""
        job_id = job_id or str(uuid.uuid4())
        self._pending.put_nowait(
            pb.JobAssignment(job_id=job_id, queue_name="default", payload=payload, attempt=1)
        )
        return job_id

    async def result_for(self, job_id: str, within: float = 30.0) -> pb.ReportResultRequest:
        async with asyncio.timeout(within):
            while True:
                for result in self.results:
                    if result.job_id == job_id:
                        return result
                self._reported.clear()
                await self._reported.wait()

    def methods_called(self) -> set[str]:
        return {call.method for call in self.calls}

    def _record(self, method: str, context: grpc.aio.ServicerContext) -> None:
        metadata = {key: str(value) for key, value in context.invocation_metadata() or ()}
        names = context.auth_context().get("x509_common_name")
        common_name = names[0].decode() if names else None
        self.calls.append(CallRecord(method, metadata, common_name))

    async def RegisterWorker(
        self, request: pb.RegisterWorkerRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterWorkerResponse:
        self._record("RegisterWorker", context)
        await self._hear()
        return pb.RegisterWorkerResponse(
            worker_id=request.worker_id or str(uuid.uuid4()),
            heartbeat_interval_s=1,
            heartbeat_timeout_s=self.heartbeat_timeout_s,
        )

    async def _hear(self) -> None:
        while self.deaf:
            await asyncio.sleep(0.05)

    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> pb.HeartbeatResponse:
        self._record("Heartbeat", context)
        await self._hear()
        return pb.HeartbeatResponse()

    async def StreamJobBatches(
        self, request: pb.StreamJobsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.JobAssignmentBatch]:
        self._record("StreamJobBatches", context)
        while True:
            assignment = await self._pending.get()
            yield pb.JobAssignmentBatch(
                assignments=[
                    pb.JobAssignment(
                        job_id=assignment.job_id,
                        queue_name=assignment.queue_name,
                        payload=assignment.payload,
                        attempt=assignment.attempt,
                        worker_id=request.worker_id,
                    )
                ]
            )

    async def AckJobs(
        self, request: pb.AckJobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AckJobsResponse:
        self._record("AckJobs", context)
        self.acks.extend(request.jobs)
        return pb.AckJobsResponse(
            outcomes=[
                pb.AttemptOutcome(job_id=j.job_id, attempt=j.attempt, accepted=True)
                for j in request.jobs
            ]
        )

    async def ReportResults(
        self, request: pb.ReportResultsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportResultsResponse:
        self._record("ReportResults", context)
        self.results.extend(request.results)
        self._reported.set()
        return pb.ReportResultsResponse(
            outcomes=[
                pb.AttemptOutcome(job_id=r.job_id, attempt=r.attempt, accepted=True)
                for r in request.results
            ]
        )

    async def Deregister(
        self, request: pb.DeregisterRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeregisterResponse:
        self._record("Deregister", context)
        return pb.DeregisterResponse()


async def start_fake_server(
    service: FakeWorkerService,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Serve `service` on a free loopback port (TLS with `credentials`); returns the port."""
    server = grpc.aio.server()
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    address = "127.0.0.1:0"
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    await server.start()
    return server, port
