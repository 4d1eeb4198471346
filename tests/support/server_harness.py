"""An in-process jq-server on a test database, and gRPC stubs to talk to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from jobq.config import Settings, load_settings
from jobq.rpc._gen import (
    admin_service_pb2_grpc,
    job_service_pb2_grpc,
    worker_service_pb2_grpc,
)
from jobq.server.app import ServerApp
from support.processes import free_port


def test_settings(dsn: str, **overrides: Any) -> Settings:
    """Settings for a server on `dsn` listening on free loopback ports; `overrides` use dotted
    keys, e.g. {"scheduler.interval_ms": 50}."""
    base: dict[str, object] = {
        "db.dsn": dsn,
        "db.pool_min_size": 1,
        "db.pool_max_size": 8,
        "grpc.host": "127.0.0.1",
        "grpc.port": free_port(),
        "grpc.graceful_shutdown_s": 2,
        "health.host": "127.0.0.1",
        "health.port": 0,
        "metrics.host": "127.0.0.1",
        "metrics.port": 0,
        "scheduler.interval_ms": 100,
        "logging.level": "warning",
    }
    base.update(overrides)
    return load_settings(None, env={}, overrides=base).settings


@dataclass
class Client:
    """Stubs for the three services over one channel."""

    channel: grpc.aio.Channel
    jobs: job_service_pb2_grpc.JobServiceStub
    workers: worker_service_pb2_grpc.WorkerServiceStub
    admin: admin_service_pb2_grpc.AdminServiceStub


def client_for(port: int) -> Client:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return Client(
        channel,
        job_service_pb2_grpc.JobServiceStub(channel),
        worker_service_pb2_grpc.WorkerServiceStub(channel),
        admin_service_pb2_grpc.AdminServiceStub(channel),
    )


@asynccontextmanager
async def running_server(
    dsn: str, overrides: Mapping[str, Any] | None = None
) -> AsyncIterator[tuple[ServerApp, Client]]:
    """Start a ServerApp on `dsn`, yield it with a connected client, stop both."""
    app = ServerApp(test_settings(dsn, **dict(overrides or {})))
    await app.start()
    assert app.grpc_port is not None
    client = client_for(app.grpc_port)
    try:
        yield app, client
    finally:
        await client.channel.close()
        await app.stop()
