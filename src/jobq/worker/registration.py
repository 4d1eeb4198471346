"""Who this process is to jq-server: its worker id, its incarnation and the heartbeat interval
they agreed on, and the RegisterWorker call that settles them.

Registration is the one place these change (the session calls `register` at the start of
every connection); the heartbeats, the job runner's logs, the reporter and the goodbye only
read them. The incarnation is kept for the process's life: registering again with it (a
reconnect) keeps the jobs this process holds, while a new process registers without one and
the server releases what the old one held.
"""

from __future__ import annotations

import socket
import time

from jobq import __version__
from jobq.config import WorkerSettings
from jobq.observability.logging_setup import get_logger
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.rpc._gen import worker_service_pb2_grpc
from jobq.worker.clock import Clock
from jobq.worker.server_contact import ServerContact

__all__ = ["RPC_TIMEOUT_S", "Registration"]

log = get_logger("jobq.worker")

RPC_TIMEOUT_S = 10.0
"""The deadline of the worker's unary calls to jq-server."""


class Registration:
    """This process's identity with the server, updated by each RegisterWorker answer."""

    def __init__(
        self, settings: WorkerSettings, contact: ServerContact, clock: Clock = time.monotonic
    ) -> None:
        self._settings = settings
        self._contact = contact
        self._clock = clock
        self.worker_id = settings.worker_id
        """The configured id until the server answers (it assigns one when none was set)."""
        self.incarnation = ""
        """What RegisterWorker issued this process (empty before): presented on every call."""
        self.heartbeat_s = settings.heartbeat_interval_s
        """The configured interval, or the server's if that is shorter."""
        self.sessions = 0
        """Successful registrations so far: more than one means a reconnect."""

    async def register(self, stub: worker_service_pb2_grpc.WorkerServiceStub) -> None:
        """Register (again) and take in what the server said: the worker id, the incarnation,
        its heartbeat timeout and interval. The answer counts as contact with the server."""
        sent = self._clock()
        reply = await stub.RegisterWorker(
            pb.RegisterWorkerRequest(
                worker_id=self.worker_id,
                hostname=socket.gethostname(),
                concurrency=self._settings.concurrency,
                queues=list(self._settings.queues),
                version=__version__,
                incarnation=self.incarnation,
            ),
            timeout=RPC_TIMEOUT_S,
        )
        self.worker_id = reply.worker_id
        self.incarnation = reply.incarnation or self.incarnation
        self.sessions += 1
        self._contact.answered(sent)
        self._contact.learn_timeout(reply.heartbeat_timeout_s, reply.heartbeat_interval_s)
        if reply.heartbeat_interval_s > 0:
            self.heartbeat_s = min(self._settings.heartbeat_interval_s, reply.heartbeat_interval_s)
        log.info(
            "registered",
            action="worker.registered",
            worker_id=self.worker_id,
            server=self._settings.server_addr,
            queues=list(self._settings.queues),
            concurrency=self._settings.concurrency,
        )
