"""The worker's sessions with jq-server: connect, register, receive jobs and heartbeat, and
reconnect when the connection ends, until the worker is asked to stop.

A session is one channel: RegisterWorker (under the same worker id and incarnation every time,
so running jobs carry on across reconnects), then the job stream and the heartbeats side by
side until one of them ends or the worker is asked to stop. A session that ends in the ordinary
course (`session_end.CONNECTION_ENDED`: the server restarted, the network broke) is logged and
reconnected with backoff. One that ends by anything else is a bug in its loops: it is logged
with its traceback and reconnected too, within a `RestartBudget`; past the budget the worker
gives up (`on_give_up`) and stops rather than run half-alive. The server's refusal of a
superseded process ends the sessions for good.

Asked to stop while connected, `serve` keeps the channel and the running heartbeats and hands
them back, so that a long drain does not get this worker declared lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import grpc

from jobq.config import WorkerSettings
from jobq.domain.records import record
from jobq.observability.logging_setup import get_logger
from jobq.observability.metrics import WorkerMetrics
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.rpc._gen import worker_service_pb2_grpc
from jobq.worker.connection import WorkerCredentials, connect
from jobq.worker.heartbeats import Heartbeats
from jobq.worker.job_runner import JobRunner
from jobq.worker.registration import Registration
from jobq.worker.reporter import Reporter
from jobq.worker.session_end import (
    CONNECTION_ENDED,
    SessionEnded,
    describe_error,
    is_superseded_error,
)
from jobq.worker.task_supervisor import RestartBudget, RestartPolicy, describe

__all__ = ["RECONNECT_BACKOFF_MAX_S", "OpenConnection", "SessionLoop", "close_channel"]

log = get_logger("jobq.worker")

RECONNECT_BACKOFF_MAX_S = 5.0
RECONNECT_BACKOFF_FIRST_S = 0.1


@record
class OpenConnection:
    """The session that was open when the worker was asked to stop, kept for the drain."""

    channel: grpc.aio.Channel
    stub: worker_service_pb2_grpc.WorkerServiceStub
    heartbeats: asyncio.Task[None] | None
    """The session's heartbeat task, still running (None if it had ended)."""


async def close_channel(channel: grpc.aio.Channel) -> None:
    """Close a channel, whatever state it is in (it may be broken already)."""
    with contextlib.suppress(Exception):
        await channel.close()


class SessionLoop:
    """Serves one session after another until the worker stops."""

    def __init__(
        self,
        settings: WorkerSettings,
        credentials: WorkerCredentials,
        registration: Registration,
        reporter: Reporter,
        jobs: JobRunner,
        heartbeats: Heartbeats,
        metrics: WorkerMetrics,
        stop: asyncio.Event,
        *,
        on_superseded: Callable[[str], None],
        on_give_up: Callable[[str, BaseException], None],
        policy: RestartPolicy,
    ) -> None:
        """`stop` is set when the worker is asked to stop; `on_give_up` is called when the
        sessions keep crashing; `policy` says how often they may."""
        self._settings = settings
        self._credentials = credentials
        self._registration = registration
        self._reporter = reporter
        self._jobs = jobs
        self._heartbeats = heartbeats
        self._metrics = metrics
        self._stop = stop
        self._on_superseded = on_superseded
        self._on_give_up = on_give_up
        self._policy = policy

    async def serve(self) -> OpenConnection | None:
        """Connect and reconnect until `stop` is set; the session open at that moment, if
        any, is handed back with its heartbeats still running."""
        backoff = RECONNECT_BACKOFF_FIRST_S
        crashes = RestartBudget(self._policy)
        while not self._stop.is_set():
            channel, stub = connect(self._settings.server_addr, self._credentials)
            try:
                heartbeats = await self._session(stub)
            except Exception as exc:
                self._reporter.disconnected()
                await close_channel(channel)
                if is_superseded_error(exc):
                    self._on_superseded(describe_error(exc))
                    break
                if not isinstance(exc, CONNECTION_ENDED):
                    self._crashed(exc, crashes)
                if self._stop.is_set():
                    break
                log.warning(
                    "connection to the server lost; reconnecting",
                    action="worker.reconnecting",
                    worker_id=self._registration.worker_id,
                    reason=describe_error(exc),
                    backoff_s=round(backoff, 2),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX_S)
                continue
            # Asked to stop while connected: keep the channel (and the heartbeats) for the
            # drain, so a long grace period does not get this worker declared lost.
            return OpenConnection(channel, stub, heartbeats)
        return None

    def _crashed(self, exc: Exception, crashes: RestartBudget) -> None:
        """A bug in a session's loops (not a connection problem): reconnect, within budget."""
        if not crashes.spend():
            log.error(
                "the connection's tasks keep failing",
                action="worker.task_failed",
                task="session",
                error=describe(exc),
                exc_info=exc,
            )
            self._on_give_up("session", exc)
            return
        log.error(
            "the connection's tasks failed; reconnecting",
            action="worker.task_restarted",
            task="session",
            error=describe(exc),
            exc_info=exc,
        )

    async def _session(
        self, stub: worker_service_pb2_grpc.WorkerServiceStub
    ) -> asyncio.Task[None] | None:
        """One connection: register, then stream and heartbeat until something ends it.
        Returns when asked to stop, with the heartbeat task if it still runs; raises
        otherwise."""
        registration = self._registration
        await registration.register(stub)
        if registration.sessions > 1:
            self._metrics.worker_reconnects.inc()
        self._reporter.connected(stub, registration.worker_id, registration.incarnation)
        stream = stub.StreamJobBatches(
            pb.StreamJobsRequest(
                worker_id=registration.worker_id, incarnation=registration.incarnation
            )
        )
        # Watched together below: whichever ends first ends the session, so neither task can
        # die unnoticed, and a failure of either is raised to `serve`'s restart budget.
        receive = asyncio.create_task(self._receive(stream), name="receive")
        heartbeats = asyncio.create_task(self._heartbeats.run(stub), name="heartbeats")
        stop = asyncio.create_task(self._stop.wait(), name="stop")
        keep = False
        try:
            done, _ = await asyncio.wait(
                [receive, heartbeats, stop], return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            heartbeats.cancel()  # nobody is left to hand it to
            raise
        finally:
            stream.cancel()  # stop taking assignments, whatever ended the session
            receive.cancel()
            stop.cancel()
            keep = self._stop.is_set() and not heartbeats.done()
            if not keep:
                heartbeats.cancel()
            await asyncio.gather(receive, stop, return_exceptions=True)
        for task in (receive, heartbeats):
            if task in done and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if not self._stop.is_set():
            raise SessionEnded("the job stream ended")
        return heartbeats if keep else None

    async def _receive(self, stream: grpc.aio.UnaryStreamCall) -> None:  # type: ignore[type-arg]
        # A message read is no news of the server's *present*: it may have waited in a buffer
        # while this process was paused. Only answered heartbeats move the contact deadline.
        async for batch in stream:
            for assignment in batch.assignments:
                self._jobs.start(assignment)
            for cancel in batch.cancels:  # empty unless someone cancelled a running job
                self._jobs.cancel(cancel.job_id, cancel.attempt)
