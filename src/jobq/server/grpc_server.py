"""jq-server's gRPC server: the services it serves behind the guard, and the port it listens
on, plain or TLS (mutual when a client CA is set).

Every method of ours and reflection goes through the guard (authentication, scopes, size
limit); the standard health service stays open for probes. A port that is taken fails start-up
with "address in use": gRPC would otherwise share it (SO_REUSEPORT), and calls would alternate
between two servers. The option is turned off in `server_options`; gRPC's own bind error is
vague, so the cause is found by binding the address once more with a plain socket.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from jobq.config import GrpcSettings, LimitsSettings
from jobq.domain.errors import ConfigError, ListenError
from jobq.rpc._gen import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)
from jobq.server.authentication import Authenticator
from jobq.server.guard import CallGuard, MethodHandler, ServiceRegistrar, core_receive_limit

__all__ = ["GrpcServer", "build_grpc_server", "server_options"]


class GrpcServer:
    """The built server, the port it listens on, the method paths it serves and their
    unguarded handlers (for the HTTP gateway, which runs the same checks itself)."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        served: list[str],
        handlers: dict[str, MethodHandler],
    ) -> None:
        self.server = server
        self.port = port
        self.served = served
        self.handlers = handlers


def build_grpc_server(
    settings: GrpcSettings,
    limits: LimitsSettings,
    authenticator: Authenticator,
    health_servicer: health.aio.HealthServicer,
    *,
    jobs: job_service_pb2_grpc.JobServiceServicer,
    workers: worker_service_pb2_grpc.WorkerServiceServicer,
    admin: admin_service_pb2_grpc.AdminServiceServicer,
) -> GrpcServer:
    """Register the services, each method guarded, and bind the port (not started yet)."""
    server = grpc.aio.server(options=server_options(settings))
    registrar = ServiceRegistrar()
    job_service_pb2_grpc.add_JobServiceServicer_to_server(  # type: ignore[no-untyped-call]
        jobs, registrar
    )
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(  # type: ignore[no-untyped-call]
        workers, registrar
    )
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(  # type: ignore[no-untyped-call]
        admin, registrar
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)  # type: ignore[arg-type]
    names = [
        job_service_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
        worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
        admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    ]
    if settings.reflection:
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(  # type: ignore[no-untyped-call]
            reflection.aio.ReflectionServicer([*names, reflection.SERVICE_NAME]), registrar
        )
    guard = CallGuard(
        authenticator,
        max_message_bytes=settings.max_message_bytes,
        max_payload_bytes=limits.max_payload_bytes,
    )
    served = registrar.install(server, guard)
    handlers = {
        f"/{service}/{name}": handler
        for service, methods in registrar.services.items()
        for name, handler in methods.items()
    }
    return GrpcServer(server, bind(server, settings), served, handlers)


def server_options(settings: GrpcSettings) -> list[tuple[str, int]]:
    receive = core_receive_limit(settings.max_message_bytes)
    return [
        ("grpc.so_reuseport", 0),
        # The SDK's channels ping every 30 s, between calls too, to keep long-lived calls (the
        # submit stream, waits) and idle connections alive through NATs. gRPC servers by
        # default refuse pings without calls and more often than every 5 minutes, and answer
        # repeated ones with GOAWAY "too_many_pings", which breaks every call on the
        # connection: accept the SDK's (and anything no more often than every 20 s).
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 20_000),
        ("grpc.max_receive_message_length", receive),
        ("grpc.max_send_message_length", settings.max_message_bytes),
    ]


def bind(server: grpc.aio.Server, settings: GrpcSettings) -> int:
    """Add the listening port to `server`; returns the port (the chosen one for port 0)."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    address = f"{host}:{settings.port}"
    credentials = _credentials(settings)
    try:
        if credentials is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, credentials)
    except RuntimeError:
        raise ListenError(
            f"cannot listen on {address} (grpc.host, grpc.port): {_bind_problem(settings)}"
        ) from None


def _credentials(settings: GrpcSettings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert:
        return None
    chain = _read(settings.tls_cert, "grpc.tls_cert")
    key = _read(settings.tls_key, "grpc.tls_key")
    client_ca = (
        _read(settings.tls_client_ca, "grpc.tls_client_ca") if settings.tls_client_ca else None
    )
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _read(path: str, setting: str) -> bytes:
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{setting}: {path} is not a PEM file")
    return data


def _bind_problem(settings: GrpcSettings) -> str:
    """Why the address cannot be bound, in words, found by trying it with a plain socket."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((settings.host, settings.port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return "address in use (is another jq-server running on this port?)"
        if exc.errno == errno.EADDRNOTAVAIL:
            return "not an address of this machine"
        if exc.errno == errno.EACCES:
            return "permission denied (ports below 1024 need privileges)"
        return exc.strerror or str(exc)
    return "gRPC could not bind it"
