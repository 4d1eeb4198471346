"""The worker's life: connect, register, heartbeat, receive, run, report, reconnect, drain.

Jobs run in tasks of their own, independent of the connection: a server restart ends the
session (stream and heartbeats), the worker reconnects with backoff and re-registers under the
same id, and running jobs carry on; their results wait in the Reporter until delivered. Only a
worker that has been unable to reach the server for longer than the server's heartbeat timeout
stops its jobs: by then it has been declared lost and they are being retried elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field

import grpc

from jobq import __version__
from jobq.config import WorkerSettings
from jobq.observability.logging_setup import get_logger
from jobq.observability.metrics import WorkerMetrics
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.rpc._gen import worker_service_pb2_grpc
from jobq.worker.connection import PLAINTEXT, WorkerCredentials, connect
from jobq.worker.executor import ExecutionResult, JobExecutor
from jobq.worker.reporter import PendingResult, Reporter

LOGGER_NAME = "jobq.worker"
log = get_logger(LOGGER_NAME)

FAILED_HEARTBEATS_BEFORE_RECONNECT = 3
RECONNECT_BACKOFF_MAX_S = 5.0
RPC_TIMEOUT_S = 10.0

_OUTCOME_LABELS = {
    pb.JOB_OUTCOME_SUCCEEDED: "success",
    pb.JOB_OUTCOME_FAILED: "failure",
    pb.JOB_OUTCOME_REFUSED: "refused",
    pb.JOB_OUTCOME_SHUTDOWN: "shutdown",
}


@dataclass(eq=False)
class RunningJob:
    assignment: pb.JobAssignment
    task: asyncio.Task[None] | None = None
    started: float = field(default_factory=time.monotonic)
    rejected: bool = False


class SessionEnded(Exception):
    """The connection to the server must be rebuilt (stream ended, heartbeats failing)."""


class WorkerRuntime:
    def __init__(
        self,
        settings: WorkerSettings,
        executor: JobExecutor,
        metrics: WorkerMetrics,
        credentials: WorkerCredentials = PLAINTEXT,
    ) -> None:
        """`credentials` (TLS, client certificate, token) go with every channel it opens."""
        self._settings = settings
        self._credentials = credentials
        self._executor = executor
        self._metrics = metrics
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._running: dict[tuple[str, int], RunningJob] = {}
        self._reporter = Reporter(self._ack_rejected)
        self._stop = asyncio.Event()
        self._draining = False
        self._accepting = True
        self.worker_id = settings.worker_id
        self._server_timeout_s = 30.0
        self._heartbeat_s = settings.heartbeat_interval_s
        self._last_contact = time.monotonic()
        self._sessions = 0
        self._channel: grpc.aio.Channel | None = None
        self._stub: worker_service_pb2_grpc.WorkerServiceStub | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        # Per-job bookkeeping is on the hot path: resolve the metric children and the log level
        # once, not for every job.
        self._finished = {
            outcome: metrics.worker_jobs.labels(result=label)
            for outcome, label in _OUTCOME_LABELS.items()
        }
        self._debug = logging.getLogger(LOGGER_NAME).isEnabledFor(logging.DEBUG)
        # Read when scraped rather than updated twice per job under the gauge's lock.
        self._active = 0
        metrics.worker_active_jobs.set_function(lambda: self._active)

    # --- control -----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """SIGTERM/SIGINT or a SHUTDOWN command: finish gracefully."""
        if not self._stop.is_set():
            log.info("shutdown requested", action="worker.stopping", worker_id=self.worker_id)
        self._stop.set()

    async def run(self) -> int:
        """Serve until asked to stop, then drain, deregister and return the exit code."""
        reporter = asyncio.create_task(self._reporter.run(), name="reporter")
        watchdog = asyncio.create_task(self._watch_server_contact(), name="watchdog")
        try:
            await self._serve_sessions()
            await self._shutdown()
        finally:
            for task in (reporter, watchdog):
                task.cancel()
            await asyncio.gather(reporter, watchdog, return_exceptions=True)
        return 0

    async def ready(self) -> tuple[bool, str]:
        """For /readyz: connected to a server and not shutting down."""
        if self._stop.is_set():
            return False, "shutting down"
        if self._stub is None and not self._reporter.is_connected:
            return False, "not connected to jq-server"
        return True, "ready"

    # --- sessions ----------------------------------------------------------------------------

    async def _serve_sessions(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            channel, stub = connect(self._settings.server_addr, self._credentials)
            try:
                await self._session(stub)
            except (SessionEnded, grpc.aio.AioRpcError) as exc:
                self._reporter.disconnected()
                await self._close(channel)
                if self._stop.is_set():
                    break
                log.warning(
                    "connection to the server lost; reconnecting",
                    action="worker.reconnecting",
                    worker_id=self.worker_id,
                    reason=_describe(exc),
                    backoff_s=round(backoff, 2),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX_S)
                continue
            # Asked to stop while connected: keep the channel (and the heartbeats) for the
            # drain, so a long grace period does not get this worker declared lost.
            self._channel, self._stub = channel, stub
            return

    async def _close(self, channel: grpc.aio.Channel) -> None:
        with contextlib.suppress(Exception):
            await channel.close()

    async def _session(self, stub: worker_service_pb2_grpc.WorkerServiceStub) -> None:
        """One connection: register, then stream and heartbeat until something ends it."""
        await self._register(stub)
        if self._sessions > 1:
            self._metrics.worker_reconnects.inc()
        self._reporter.connected(stub, self.worker_id)
        stream = stub.StreamJobBatches(pb.StreamJobsRequest(worker_id=self.worker_id))
        receive = asyncio.create_task(self._receive(stream), name="receive")
        heartbeats = asyncio.create_task(self._heartbeats(stub), name="heartbeats")
        stop = asyncio.create_task(self._stop.wait(), name="stop")
        tasks = [receive, heartbeats, stop]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stream.cancel()  # stop taking assignments, whatever ended the session
            receive.cancel()
            stop.cancel()
            if not self._stop.is_set() or heartbeats.done():
                heartbeats.cancel()
            else:
                self._heartbeat_task = heartbeats
            await asyncio.gather(receive, stop, return_exceptions=True)
        for task in (receive, heartbeats):
            if task in done and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if not self._stop.is_set():
            raise SessionEnded("the job stream ended")

    async def _register(self, stub: worker_service_pb2_grpc.WorkerServiceStub) -> None:
        reply = await stub.RegisterWorker(
            pb.RegisterWorkerRequest(
                worker_id=self.worker_id,
                hostname=socket.gethostname(),
                concurrency=self._settings.concurrency,
                queues=list(self._settings.queues),
                version=__version__,
            ),
            timeout=RPC_TIMEOUT_S,
        )
        self.worker_id = reply.worker_id
        self._sessions += 1
        self._last_contact = time.monotonic()
        if reply.heartbeat_interval_s > 0:
            # The server declares a worker lost after about three of its intervals.
            self._server_timeout_s = 3.0 * reply.heartbeat_interval_s
            self._heartbeat_s = min(self._settings.heartbeat_interval_s, reply.heartbeat_interval_s)
        log.info(
            "registered",
            action="worker.registered",
            worker_id=self.worker_id,
            server=self._settings.server_addr,
            queues=list(self._settings.queues),
            concurrency=self._settings.concurrency,
        )

    async def _receive(self, stream: grpc.aio.UnaryStreamCall) -> None:  # type: ignore[type-arg]
        async for batch in stream:
            self._last_contact = time.monotonic()
            for assignment in batch.assignments:
                self._start_job(assignment)

    async def _heartbeats(self, stub: worker_service_pb2_grpc.WorkerServiceStub) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self._heartbeat_s)
            running = [
                pb.JobAttempt(job_id=job_id, attempt=attempt) for job_id, attempt in self._running
            ]
            try:
                reply = await stub.Heartbeat(
                    pb.HeartbeatRequest(
                        worker_id=self.worker_id,
                        active_job_count=len(running),
                        running=running,
                    ),
                    timeout=min(RPC_TIMEOUT_S, max(self._heartbeat_s, 1.0)),
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.NOT_FOUND:
                    raise SessionEnded("the server no longer knows this worker") from None
                failures += 1
                if failures >= FAILED_HEARTBEATS_BEFORE_RECONNECT:
                    log.error(
                        "heartbeats failing",
                        action="worker.heartbeat_failed",
                        worker_id=self.worker_id,
                        failures=failures,
                    )
                    raise SessionEnded(f"{failures} heartbeats failed") from None
                continue
            failures = 0
            self._last_contact = time.monotonic()
            self._handle_commands(reply.commands)

    def _handle_commands(self, commands: object) -> None:
        for command in commands:  # type: ignore[attr-defined]
            if command == pb.WORKER_COMMAND_DRAIN and not self._draining:
                self._draining = True
                log.info(
                    "draining: no new jobs", action="worker.draining", worker_id=self.worker_id
                )
            elif command == pb.WORKER_COMMAND_SHUTDOWN:
                self.request_stop()

    async def _watch_server_contact(self) -> None:
        """Stop running jobs once the server must have declared this worker lost."""
        while True:
            await asyncio.sleep(1.0)
            silent = time.monotonic() - self._last_contact
            if silent > self._server_timeout_s and self._running:
                log.error(
                    "server unreachable longer than its heartbeat timeout; stopping jobs",
                    action="worker.lost",
                    worker_id=self.worker_id,
                    silent_s=round(silent, 1),
                    jobs=len(self._running),
                )
                for job in list(self._running.values()):
                    if job.task is not None:
                        job.rejected = True  # its result would be stale: report nothing
                        job.task.cancel()
                self._reporter.forget()

    # --- jobs --------------------------------------------------------------------------------

    def _start_job(self, assignment: pb.JobAssignment) -> None:
        key = (assignment.job_id, assignment.attempt)
        if key in self._running:
            return  # a re-sent assignment we already run
        job = RunningJob(assignment)
        self._running[key] = job
        job.task = asyncio.create_task(self._run_job(job), name=f"job-{assignment.job_id}")

    async def _run_job(self, job: RunningJob) -> None:
        a = job.assignment
        key = (a.job_id, a.attempt)
        outcome, result = pb.JOB_OUTCOME_SHUTDOWN, ExecutionResult(False, b"", "worker shut down")
        try:
            async with self._slots:
                self._reporter.ack(a.job_id, a.attempt)
                self._active += 1
                started = time.monotonic()
                try:
                    result = await self._executor.run(a.payload, float(a.timeout_s) or None)
                    outcome = _outcome(result)
                finally:
                    self._active -= 1
                    self._metrics.worker_job_duration_seconds.observe(time.monotonic() - started)
        except asyncio.CancelledError:
            outcome = pb.JOB_OUTCOME_SHUTDOWN
            result = ExecutionResult(False, b"", "interrupted by worker shutdown")
        finally:
            self._running.pop(key, None)
        if job.rejected:
            return
        self._finished[outcome].inc()
        if outcome == pb.JOB_OUTCOME_REFUSED:  # rare, and the operator of this worker may care
            log.warning(
                "job refused",
                action="job.refused",
                job_id=a.job_id,
                attempt=a.attempt,
                queue=a.queue_name,
                worker_id=self.worker_id,
                reason=result.error_message,
            )
        if self._debug:
            log.debug(
                "job finished",
                action=f"job.{_OUTCOME_LABELS[outcome]}",
                job_id=a.job_id,
                attempt=a.attempt,
                worker_id=self.worker_id,
            )
        self._reporter.result(
            PendingResult(a.job_id, a.attempt, outcome, result.result, result.error_message)
        )

    def _ack_rejected(self, outcome: pb.AttemptOutcome) -> None:
        """The server refused our start: the job was cancelled or re-assigned. Stop it."""
        job = self._running.get((outcome.job_id, outcome.attempt))
        log.warning(
            "start not accepted; abandoning the job",
            action="job.start_rejected",
            job_id=outcome.job_id,
            attempt=outcome.attempt,
            reason=outcome.message,
        )
        if job is not None and job.task is not None:
            job.rejected = True
            job.task.cancel()

    # --- shutdown ----------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Let running jobs finish within the grace period, interrupt the rest (reported as
        SHUTDOWN: back to PENDING without a retry), deliver every result, deregister."""
        grace = self._settings.shutdown_grace_period_s
        tasks = [job.task for job in self._running.values() if job.task is not None]
        if tasks:
            log.info(
                "waiting for running jobs",
                action="worker.draining_jobs",
                jobs=len(tasks),
                grace_s=grace,
            )
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=10)
        await self._reconnect_for_goodbye()

    async def _reconnect_for_goodbye(self) -> None:
        """Deliver the last results and deregister (over a fresh channel if the session's is
        gone), then close."""
        channel, stub = self._channel, self._stub
        if channel is None or stub is None:
            channel, stub = connect(self._settings.server_addr, self._credentials)
        try:
            if self.worker_id:
                self._reporter.connected(stub, self.worker_id)
                if not await self._reporter.flushed(within=10.0):
                    log.error("could not deliver every result", action="worker.results_lost")
                if self._heartbeat_task is not None:
                    self._heartbeat_task.cancel()
                    await asyncio.gather(self._heartbeat_task, return_exceptions=True)
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await stub.Deregister(
                        pb.DeregisterRequest(worker_id=self.worker_id), timeout=RPC_TIMEOUT_S
                    )
            log.info("deregistered", action="worker.stopped", worker_id=self.worker_id)
        finally:
            await self._close(channel)


def _outcome(result: ExecutionResult) -> pb.JobOutcome:
    if result.success:
        return pb.JOB_OUTCOME_SUCCEEDED
    # A refusal is dead-lettered at once by the server; any other failure is retried.
    return pb.JOB_OUTCOME_REFUSED if result.refused else pb.JOB_OUTCOME_FAILED


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)
