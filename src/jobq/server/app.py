"""jq-server's composition root: chooses and wires the real implementations, runs, stops."""

from __future__ import annotations

import asyncio
import signal
import time

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from jobq.config import Settings
from jobq.domain.errors import Unavailable
from jobq.observability.logging_setup import get_logger
from jobq.storage.database import DatabaseHandle, open_database
from jobq.storage.migrations import migrate
from jobq.storage.pool import create_pool

log = get_logger("jobq.server")


class ServerApp:
    """One jq-server process: database, migrations, pool and the gRPC server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_monotonic = time.monotonic()
        self._database: DatabaseHandle | None = None
        self._pool: asyncpg.Pool | None = None
        self._grpc: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._stopping = asyncio.Event()
        self.grpc_port: int | None = None

    async def start(self) -> None:
        """Open the database, bring its schema up to date, and start serving."""
        self._database = await open_database(self.settings.db)
        log.info(
            "using " + self._database.description,
            action="db.selected",
            embedded=self._database.embedded is not None,
        )
        try:
            conn = await asyncpg.connect(
                self._database.dsn, timeout=self.settings.db.connect_timeout_s
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise Unavailable(f"cannot reach PostgreSQL: {exc}") from None
        try:
            report = await migrate(conn)
        finally:
            await conn.close()
        log.info(
            "schema up to date",
            action="db.migrated",
            applied=list(report.applied),
            already_applied=len(report.already_applied),
        )
        db = self.settings.db
        self._pool = await create_pool(
            self._database.dsn,
            min_size=db.pool_min_size,
            max_size=db.pool_max_size,
            connect_timeout_s=db.connect_timeout_s,
            command_timeout_s=db.command_timeout_s,
        )
        await self._start_grpc()

    async def _start_grpc(self) -> None:
        cfg = self.settings.grpc
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", cfg.max_message_bytes),
                ("grpc.max_send_message_length", cfg.max_message_bytes),
            ]
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        reflection.enable_server_reflection(names, server)
        address = f"{cfg.host}:{cfg.port}"
        self.grpc_port = server.add_insecure_port(address)
        await server.start()
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        self._grpc = server
        log.info("serving gRPC", action="server.started", address=address)

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait(self) -> None:
        await self._stopping.wait()

    async def stop(self) -> None:
        """Stop accepting RPCs, let in-flight ones finish within the grace period, close."""
        log.info("shutting down", action="server.stopping")
        await self._health.enter_graceful_shutdown()
        if self._grpc is not None:
            await self._grpc.stop(self.settings.grpc.graceful_shutdown_s)
        if self._pool is not None:
            await self._pool.close()
        if self._database is not None:
            await self._database.close()
        log.info("stopped", action="server.stopped")


async def run_server(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    app = ServerApp(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.request_stop)
    try:
        await app.start()
        await app.wait()
    finally:
        await app.stop()
