"""How the worker stops: why (asked to, a loop that kept failing, superseded), and the drain.

Three ways to stop, one owner of the decision (`Shutdown`):
- asked to (SIGTERM/SIGINT, the server's SHUTDOWN command): running jobs get the grace period
  to finish, the rest are interrupted (SHUTDOWN: back to PENDING without using a retry), every
  result is delivered, and the worker deregisters; `run` returns 0.
- a loop that cannot be kept running (`give_up`): the same, but jobs are interrupted at once,
  to run on a healthy worker; the worker exits 1 rather than run half-alive.
- superseded (`supersede`): a newer process registered under this worker id. Its jobs were
  released when the newer one registered and nothing this process reports counts any more,
  so its jobs are killed and nothing is reported or deregistered (EXIT_SUPERSEDED). It must not
  register again, which would supersede the newer process in turn.

`Shutdown` is built on the parts whose news decides it, and subscribes itself to them when it
is built: a loop given up on (`TaskSupervisor.on_give_up`), the server's SHUTDOWN command
(`Heartbeats.on_shutdown`), and its refusal of this process (`Reporter.on_superseded`,
`Heartbeats.on_superseded`). The session loop, built after it, is handed `stop`, `give_up` and
`supersede` directly.

The session open when the worker was asked to stop is kept through the drain, heartbeats
included, so a long grace period does not get the worker declared lost. Those heartbeats run
under the task supervisor like every other loop: a bug in them is logged and restarted, while
a connection problem is retried every interval, as the session would by reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from jobq.config import WorkerSettings
from jobq.observability.logging_setup import get_logger
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.worker.connection import WorkerCredentials, connect
from jobq.worker.heartbeats import Heartbeats
from jobq.worker.job_runner import JobRunner
from jobq.worker.registration import RPC_TIMEOUT_S, Registration
from jobq.worker.reporter import Reporter
from jobq.worker.session import OpenConnection, close_channel
from jobq.worker.session_end import CONNECTION_ENDED, describe_error
from jobq.worker.task_supervisor import TaskSupervisor, describe

__all__ = ["ABANDON_WAIT_S", "DRAIN_HEARTBEATS", "EXIT_SUPERSEDED", "FLUSH_WAIT_S", "Shutdown"]

log = get_logger("jobq.worker")

EXIT_SUPERSEDED = 3
"""The exit code of a process that stopped because a newer one registered under its worker id:
distinct, so a supervisor can be told not to restart it (systemd: RestartPreventExitStatus=3),
which would only supersede the newer process in turn."""
ABANDON_WAIT_S = 10.0
"""How long a superseded process waits for its cancelled jobs to be killed."""
FLUSH_WAIT_S = 10.0
"""How long the last results may take to be delivered before the worker deregisters."""
DRAIN_HEARTBEATS = "heartbeats"
"""The supervisor's name for the heartbeats kept through the drain."""


class Shutdown:
    """Decides when the worker stops and why, and carries the stop out."""

    def __init__(
        self,
        settings: WorkerSettings,
        credentials: WorkerCredentials,
        registration: Registration,
        jobs: JobRunner,
        reporter: Reporter,
        heartbeats: Heartbeats,
        supervisor: TaskSupervisor,
    ) -> None:
        self._settings = settings
        self._credentials = credentials
        self._registration = registration
        self._jobs = jobs
        self._reporter = reporter
        self._heartbeats = heartbeats
        self._supervisor = supervisor
        self.stop = asyncio.Event()
        """Set once the worker is to stop, for whichever reason."""
        self.failure = ""
        """Why the worker stops on its own (a loop kept failing); empty while healthy."""
        self.superseded = ""
        """The server's refusal of this process as superseded; empty while not."""
        supervisor.on_give_up(self.give_up)
        heartbeats.on_shutdown(self.request_stop)
        heartbeats.on_superseded(self.supersede)
        reporter.on_superseded(self.supersede)

    def request_stop(self) -> None:
        """SIGTERM/SIGINT or a SHUTDOWN command: finish gracefully."""
        if not self.stop.is_set():
            log.info(
                "shutdown requested",
                action="worker.stopping",
                worker_id=self._registration.worker_id,
            )
        self.stop.set()

    def give_up(self, name: str, problem: BaseException) -> None:
        """A loop cannot be kept running: stop rather than run half-alive (e.g. taking jobs
        whose results nobody sends)."""
        if not self.failure:
            self.failure = f"the {name} task kept failing ({describe(problem)})"
            log.error(
                "stopping the worker: a task it needs kept failing",
                action="worker.stopping_on_failure",
                worker_id=self._registration.worker_id,
                task=name,
                error=describe(problem),
            )
        self.request_stop()

    def supersede(self, reason: str) -> None:
        """The server refused this process: a newer one registered under this worker id (a
        restart while this one was cut off, or a second deployment with the same id). Stop at
        once: kill the jobs, report nothing, never register again."""
        if self.superseded:
            return
        self.superseded = reason
        log.error(
            "superseded by a newer process of this worker; stopping its jobs and exiting",
            action="worker.superseded",
            worker_id=self._registration.worker_id,
            reason=reason,
            jobs=len(self._jobs.running),
        )
        self._jobs.abandon_all()
        self._reporter.forget()
        self.request_stop()

    async def finish(self, kept: OpenConnection | None) -> None:
        """Once the sessions are over: abandon (superseded) or drain and say goodbye."""
        if self.superseded:
            await self._abandon(kept)
        else:
            await self._drain(kept)

    async def _abandon(self, kept: OpenConnection | None) -> None:
        """After `supersede`: wait (briefly) for the cancelled jobs to be killed, then close
        the channel without a goodbye."""
        await self._jobs.wait_all(ABANDON_WAIT_S)
        if kept is not None:
            if kept.heartbeats is not None:
                kept.heartbeats.cancel()
                await asyncio.gather(kept.heartbeats, return_exceptions=True)
            await close_channel(kept.channel)
        log.info(
            "stopped: superseded",
            action="worker.stopped",
            worker_id=self._registration.worker_id,
        )

    async def _drain(self, kept: OpenConnection | None) -> None:
        """Let running jobs finish within the grace period, interrupt the rest, deliver every
        result, deregister."""
        if kept is not None and kept.heartbeats is not None:
            self._keep_heartbeating(kept)
        # A worker stopping on a failure interrupts its jobs at once: they go back to PENDING
        # without using a retry, to run on a healthy worker.
        grace = 0.0 if self.failure else self._settings.shutdown_grace_period_s
        await self._jobs.finish(grace)
        await self._goodbye(kept)

    def _keep_heartbeating(self, kept: OpenConnection) -> None:
        """Hand the session's heartbeats, still running on their cadence, to the supervisor
        for the drain."""
        session_task = kept.heartbeats

        async def heartbeats() -> None:
            nonlocal session_task
            while True:
                try:
                    if session_task is not None:
                        # Awaited, not restarted: the next heartbeat keeps its time. A cancel
                        # of this loop cancels the awaited task too.
                        task, session_task = session_task, None
                        await task
                    else:
                        await self._heartbeats.run(kept.stub)
                except CONNECTION_ENDED as exc:
                    # Not a bug: the server is away or forgot us. The session would reconnect;
                    # here the channel is kept, so try again at the next interval.
                    log.warning(
                        "heartbeats failing while draining; still trying",
                        action="worker.heartbeat_failed",
                        worker_id=self._registration.worker_id,
                        reason=describe_error(exc),
                    )

        self._supervisor.start(DRAIN_HEARTBEATS, heartbeats)

    async def _goodbye(self, kept: OpenConnection | None) -> None:
        """Deliver the last results and deregister (over a fresh channel if the session's is
        gone), then close."""
        if kept is not None:
            channel, stub = kept.channel, kept.stub
        else:
            channel, stub = connect(self._settings.server_addr, self._credentials)
        registration = self._registration
        try:
            if registration.worker_id:
                self._reporter.connected(stub, registration.worker_id, registration.incarnation)
                # Without its reporter nothing would be sent: do not wait for it to happen.
                sending = self._supervisor.running("reporter")
                if not (sending and await self._reporter.flushed(within=FLUSH_WAIT_S)):
                    log.error("could not deliver every result", action="worker.results_lost")
                await self._supervisor.cancel(DRAIN_HEARTBEATS)
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await stub.Deregister(
                        pb.DeregisterRequest(
                            worker_id=registration.worker_id, incarnation=registration.incarnation
                        ),
                        timeout=RPC_TIMEOUT_S,
                    )
            log.info("deregistered", action="worker.stopped", worker_id=registration.worker_id)
        finally:
            await close_channel(channel)
