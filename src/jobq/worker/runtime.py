"""The worker's life: connect, register, heartbeat, receive, run, report, reconnect, drain.

Jobs run in tasks of their own, independent of the connection: a server restart ends the
session (stream and heartbeats), the worker reconnects with backoff and re-registers under the
same id, and running jobs carry on; their results wait in the Reporter until delivered.

A worker that cannot reach the server stops its jobs *before* the server can declare it lost
and run them again elsewhere (`server_contact.py` says when). Stopped jobs are reported as
interrupted once the server is back: those the server still holds go back to PENDING at once,
the others' reports are refused as stale. Assignments read after that deadline (a worker
paused and resumed finds them buffered) are handed back the same way, never started. Python
cannot stop a sync handler's thread, so if one still runs then, the worker exits
(EXIT_CONTACT_LOST): only that ends it before its job runs twice, and its supervisor restarts
the worker.

No part of the worker dies silently. The loops that outlive a session (reporter, watchdog, and
the `background` loops the composition root hands over, such as the job guardian's watch) run
under a `TaskSupervisor`; a session whose loops fail unexpectedly is logged and reconnected,
within a `RestartBudget`. A loop that cannot be kept running stops the worker: running jobs are
interrupted at once (handed back as SHUTDOWN), it deregisters, and `run` returns 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import grpc

from jobq import __version__
from jobq.config import WorkerSettings
from jobq.domain.errors import is_superseded
from jobq.observability.logging_setup import get_logger
from jobq.observability.metrics import WorkerMetrics
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.rpc._gen import worker_service_pb2_grpc
from jobq.worker.connection import PLAINTEXT, WorkerCredentials, connect
from jobq.worker.executor import ExecutionResult, JobExecutor
from jobq.worker.reporter import PendingResult, Reporter
from jobq.worker.server_contact import ServerContact
from jobq.worker.task_supervisor import (
    DEFAULT_POLICY,
    RestartBudget,
    RestartPolicy,
    TaskSupervisor,
    cancelled_from_outside,
    describe,
)

LOGGER_NAME = "jobq.worker"
log = get_logger(LOGGER_NAME)

FAILED_HEARTBEATS_BEFORE_RECONNECT = 3
EXIT_SUPERSEDED = 3
EXIT_CONTACT_LOST = 5
"""The exit code of a process that lost the server while sync handlers it cannot stop were
running on its threads: its jobs are about to run again elsewhere, and only its exit ends
them. A supervisor should restart it (unlike EXIT_SUPERSEDED)."""
CONTACT_CHECK_S = 0.1
"""How often the watchdog compares the time with the contact deadline."""
STOP_WAIT_S = 2.0
"""How long stopped jobs get to end (a command job's group is SIGKILLed at once)."""
"""The exit code of a process that stopped because a newer one registered under its worker id:
distinct, so a supervisor can be told not to restart it (systemd: RestartPreventExitStatus=3),
which would only supersede the newer process in turn."""
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
    stop_reason: str = ""
    """Why the worker itself stopped the job (reported with the interruption)."""


class SessionEnded(Exception):
    """The connection to the server must be rebuilt (stream ended, heartbeats failing)."""


_CONNECTION_ENDED = (SessionEnded, grpc.aio.AioRpcError, grpc.aio.UsageError)
"""How a session ends in the ordinary course (anything else is a bug in its loops)."""


class WorkerRuntime:
    def __init__(
        self,
        settings: WorkerSettings,
        executor: JobExecutor,
        metrics: WorkerMetrics,
        credentials: WorkerCredentials = PLAINTEXT,
        *,
        background: Mapping[str, Callable[[], Awaitable[None]]] | None = None,
        supervision: RestartPolicy = DEFAULT_POLICY,
    ) -> None:
        """`credentials` (TLS, client certificate, token) go with every channel it opens;
        `background` names more loops to run and supervise while the worker runs;
        `supervision` says how often a failing loop or session is restarted."""
        self._settings = settings
        self._background = dict(background or {})
        self._supervision = supervision
        self._supervisor = TaskSupervisor(self._give_up, supervision)
        self._failure = ""
        """Why the worker stops on its own (a loop kept failing); empty while healthy."""
        self._credentials = credentials
        self._executor = executor
        self._metrics = metrics
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._running: dict[tuple[str, int], RunningJob] = {}
        self._reporter = Reporter(self._ack_rejected, self._supersede)
        self._stop = asyncio.Event()
        self._draining = False
        self._accepting = True
        self.worker_id = settings.worker_id
        self._incarnation = ""
        """What RegisterWorker issued this process (empty before): presented on every call."""
        self._superseded = ""
        """Why this process stops: the server's refusal of it as superseded; empty while not."""
        self._heartbeat_s = settings.heartbeat_interval_s
        self.contact = ServerContact()
        self.exit_process: Callable[[int], object] = _exit_now
        """How the worker exits when it must (replaced in tests)."""
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
        """Serve until asked to stop, then drain, deregister and return the exit code: 0, or 1
        when a background loop kept failing and the worker stopped itself, or EXIT_SUPERSEDED
        when a newer process registered under its worker id (no drain, no goodbye)."""
        self._supervisor.start("reporter", self._reporter.run)
        self._supervisor.start("watchdog", self._watch_server_contact)
        for name, loop in self._background.items():
            self._supervisor.start(name, loop)
        try:
            await self._serve_sessions()
            if self._superseded:
                await self._abandon_jobs()
            else:
                await self._shutdown()
        finally:
            await self._supervisor.stop()
        if self._superseded:
            return EXIT_SUPERSEDED
        if self._failure:
            log.error(
                "worker stopped after a failure",
                action="worker.failed",
                worker_id=self.worker_id,
                reason=self._failure,
            )
            return 1
        return 0

    def _give_up(self, name: str, problem: BaseException) -> None:
        """A loop cannot be kept running: stop rather than run half-alive (e.g. taking jobs
        whose results nobody sends)."""
        if not self._failure:
            self._failure = f"the {name} task kept failing ({describe(problem)})"
            log.error(
                "stopping the worker: a task it needs kept failing",
                action="worker.stopping_on_failure",
                worker_id=self.worker_id,
                task=name,
                error=describe(problem),
            )
        self.request_stop()

    @property
    def loop_stall_limit_s(self) -> float:
        """How long the event loop may stay blocked (a handler calling blocking code in an
        `async def`) before the worker must exit (`LoopWatchdog`)."""
        return self.contact.stall_limit_s(self._heartbeat_s)

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
        crashes = RestartBudget(self._supervision)
        while not self._stop.is_set():
            channel, stub = connect(self._settings.server_addr, self._credentials)
            try:
                await self._session(stub)
            except Exception as exc:
                self._reporter.disconnected()
                await self._close(channel)
                if _is_superseded(exc):
                    self._supersede(_describe(exc))
                    break
                if not isinstance(exc, _CONNECTION_ENDED):
                    self._session_crashed(exc, crashes)
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

    def _session_crashed(self, exc: Exception, crashes: RestartBudget) -> None:
        """A bug in a session's loops (not a connection problem): reconnect, within budget."""
        if not crashes.spend():
            log.error(
                "the connection's tasks keep failing",
                action="worker.task_failed",
                task="session",
                error=describe(exc),
                exc_info=exc,
            )
            self._give_up("session", exc)
            return
        log.error(
            "the connection's tasks failed; reconnecting",
            action="worker.task_restarted",
            task="session",
            error=describe(exc),
            exc_info=exc,
        )

    async def _close(self, channel: grpc.aio.Channel) -> None:
        with contextlib.suppress(Exception):
            await channel.close()

    async def _session(self, stub: worker_service_pb2_grpc.WorkerServiceStub) -> None:
        """One connection: register, then stream and heartbeat until something ends it."""
        await self._register(stub)
        if self._sessions > 1:
            self._metrics.worker_reconnects.inc()
        self._reporter.connected(stub, self.worker_id, self._incarnation)
        stream = stub.StreamJobBatches(
            pb.StreamJobsRequest(worker_id=self.worker_id, incarnation=self._incarnation)
        )
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
        sent = time.monotonic()
        reply = await stub.RegisterWorker(
            pb.RegisterWorkerRequest(
                worker_id=self.worker_id,
                hostname=socket.gethostname(),
                concurrency=self._settings.concurrency,
                queues=list(self._settings.queues),
                version=__version__,
                incarnation=self._incarnation,
            ),
            timeout=RPC_TIMEOUT_S,
        )
        self.worker_id = reply.worker_id
        # Kept for this process's life: registering again with it (a reconnect) keeps the jobs;
        # a new process registers without one and the server releases what this one held.
        self._incarnation = reply.incarnation or self._incarnation
        self._sessions += 1
        self.contact.answered(sent)
        self.contact.learn_timeout(reply.heartbeat_timeout_s, reply.heartbeat_interval_s)
        if reply.heartbeat_interval_s > 0:
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
        # A message read is no news of the server's *present*: it may have waited in a buffer
        # while this process was paused. Only answered heartbeats move the contact deadline.
        async for batch in stream:
            for assignment in batch.assignments:
                self._start_job(assignment)

    async def _heartbeats(self, stub: worker_service_pb2_grpc.WorkerServiceStub) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self._heartbeat_s)
            # Everything this process holds: jobs running or waiting for a slot, and finished
            # ones whose results the server has not answered yet. The server takes back what
            # is missing here (an assignment lost on a dead connection) after a grace period.
            held = {*self._running, *self._reporter.unsettled()}
            running = [pb.JobAttempt(job_id=job_id, attempt=attempt) for job_id, attempt in held]
            sent = time.monotonic()
            try:
                reply = await stub.Heartbeat(
                    pb.HeartbeatRequest(
                        worker_id=self.worker_id,
                        active_job_count=len(running),
                        running=running,
                        incarnation=self._incarnation,
                    ),
                    # A slow answer still counts, by when the heartbeat was sent (the server
                    # recorded it after that): wait for it up to the contact deadline rather
                    # than give up after an interval and stop jobs of a server that is slow,
                    # not gone (a replica catching up after a pause, a loaded database).
                    timeout=min(
                        RPC_TIMEOUT_S,
                        max(self._heartbeat_s, 1.0, self.contact.deadline - sent),
                    ),
                )
            except asyncio.CancelledError:
                if cancelled_from_outside():
                    raise
                # grpc.aio cancels the calls of a closed channel: this session is over.
                raise SessionEnded("the heartbeat's channel was closed") from None
            except grpc.aio.UsageError:
                raise SessionEnded("the heartbeat's channel was closed") from None
            except grpc.aio.AioRpcError as exc:
                if _is_superseded(exc):
                    self._supersede(_describe(exc))
                    raise
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
            self.contact.answered(sent)
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
        """Stop running jobs before the server can declare this worker lost."""
        while True:
            await asyncio.sleep(CONTACT_CHECK_S)
            if self._running and self.contact.lost():
                await self._stop_jobs_out_of_contact()

    async def _stop_jobs_out_of_contact(self) -> None:
        """Interrupt every running job (reported once the server is back: PENDING again if it
        still holds them, refused as stale if it ran them elsewhere); exit if a sync handler's
        thread runs on, since nothing else stops it."""
        reason = f"stopped: {self.contact.describe()}"
        log.error(
            "lost contact with the server; stopping jobs before they run again elsewhere",
            action="worker.lost",
            worker_id=self.worker_id,
            reason=reason,
            jobs=len(self._running),
        )
        tasks = []
        for job in list(self._running.values()):
            if job.task is not None and not job.task.done():
                job.stop_reason = reason
                job.task.cancel()
                tasks.append(job.task)
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT_S)
        unstoppable = self._executor.unstoppable_running()
        if unstoppable:
            log.error(
                "sync handlers still run on threads Python cannot stop; exiting so that they "
                "end before their jobs run again elsewhere",
                action="worker.exiting",
                worker_id=self.worker_id,
                handlers=unstoppable,
                exit_code=EXIT_CONTACT_LOST,
            )
            self.exit_process(EXIT_CONTACT_LOST)

    # --- jobs --------------------------------------------------------------------------------

    def _start_job(self, assignment: pb.JobAssignment) -> None:
        key = (assignment.job_id, assignment.attempt)
        if key in self._running:
            return  # a re-sent assignment we already run
        if self.contact.lost():
            # Read after contact was lost (buffered while this process was paused): the
            # server may have run it elsewhere already. Hand it back, unstarted.
            a = assignment
            self._reporter.result(
                PendingResult(
                    a.job_id,
                    a.attempt,
                    pb.JOB_OUTCOME_SHUTDOWN,
                    b"",
                    f"not started: {self.contact.describe()}",
                    claim_id=a.claim_id,
                )
            )
            return
        job = RunningJob(assignment)
        self._running[key] = job
        job.task = asyncio.create_task(self._run_job(job), name=f"job-{assignment.job_id}")

    async def _run_job(self, job: RunningJob) -> None:
        a = job.assignment
        key = (a.job_id, a.attempt)
        outcome, result = pb.JOB_OUTCOME_SHUTDOWN, ExecutionResult(False, b"", "worker shut down")
        try:
            async with self._slots:
                self._reporter.ack(a.job_id, a.attempt, a.claim_id)
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
            result = ExecutionResult(
                False, b"", job.stop_reason or "interrupted by worker shutdown"
            )
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
            PendingResult(
                a.job_id,
                a.attempt,
                outcome,
                result.result,
                result.error_message,
                claim_id=a.claim_id,
            )
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

    def _supersede(self, reason: str) -> None:
        """The server refused this process: a newer one registered under this worker id (a
        restart while this one was cut off, or a second deployment with the same id). Its jobs
        were released when the newer one registered, and nothing this process reports counts
        any more, so it stops at once: its jobs are killed and nothing is reported or
        deregistered. It must not register again, which would supersede the newer process."""
        if self._superseded:
            return
        self._superseded = reason
        log.error(
            "superseded by a newer process of this worker; stopping its jobs and exiting",
            action="worker.superseded",
            worker_id=self.worker_id,
            reason=reason,
            jobs=len(self._running),
        )
        for job in list(self._running.values()):
            if job.task is not None:
                job.rejected = True  # its result would be refused: report nothing
                job.task.cancel()
        self._reporter.forget()
        self.request_stop()

    async def _abandon_jobs(self) -> None:
        """After `_supersede`: wait (briefly) for the cancelled jobs to be killed, then close
        the channel without a goodbye."""
        tasks = [job.task for job in self._running.values() if job.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
        if self._channel is not None:
            await self._close(self._channel)
        log.info("stopped: superseded", action="worker.stopped", worker_id=self.worker_id)

    async def _shutdown(self) -> None:
        """Let running jobs finish within the grace period, interrupt the rest (reported as
        SHUTDOWN: back to PENDING without a retry), deliver every result, deregister."""
        # A worker stopping on a failure interrupts its jobs at once: they go back to PENDING
        # without using a retry, to run on a healthy worker.
        grace = 0.0 if self._failure else self._settings.shutdown_grace_period_s
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
                self._reporter.connected(stub, self.worker_id, self._incarnation)
                # Without its reporter nothing would be sent: do not wait for it to happen.
                sending = self._supervisor.running("reporter")
                if not (sending and await self._reporter.flushed(within=10.0)):
                    log.error("could not deliver every result", action="worker.results_lost")
                if self._heartbeat_task is not None:
                    self._heartbeat_task.cancel()
                    await asyncio.gather(self._heartbeat_task, return_exceptions=True)
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await stub.Deregister(
                        pb.DeregisterRequest(
                            worker_id=self.worker_id, incarnation=self._incarnation
                        ),
                        timeout=RPC_TIMEOUT_S,
                    )
            log.info("deregistered", action="worker.stopped", worker_id=self.worker_id)
        finally:
            await self._close(channel)


def _exit_now(code: int) -> None:
    """Exit at once, from wherever: threads that cannot be stopped must not hold it up."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(code)


def _is_superseded(exc: BaseException) -> bool:
    """The server's refusal of this process: a newer one registered under its worker id."""
    return (
        isinstance(exc, grpc.aio.AioRpcError)
        and exc.code() is grpc.StatusCode.FAILED_PRECONDITION
        and is_superseded(exc.details() or "")
    )


def _outcome(result: ExecutionResult) -> pb.JobOutcome:
    if result.success:
        return pb.JOB_OUTCOME_SUCCEEDED
    # A refusal is dead-lettered at once by the server; any other failure is retried.
    return pb.JOB_OUTCOME_REFUSED if result.refused else pb.JOB_OUTCOME_FAILED


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)
