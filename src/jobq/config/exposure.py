"""Which listening addresses need authentication: everything but loopback.

With no authentication configured, jq-server and jq-worker listen on loopback only; a
non-loopback address is refused at start-up unless the operator says `--insecure`
(`grpc.insecure: true`). One rule for every port (gRPC, health, metrics, on server and worker),
so no listener is left open by accident.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

__all__ = ["SERVER_CREDENTIALS", "WORKER_CREDENTIALS", "exposure_problems", "is_loopback"]


def is_loopback(host: str) -> bool:
    """True when `host` only ever means this machine: 127.0.0.0/8, ::1, or a name that
    resolves to nothing else. The empty host, 0.0.0.0 and :: mean every interface."""
    name = host.strip().strip("[]")
    if not name:
        return False
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    if name.lower() == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False  # unresolvable: the bind fails anyway; don't call it safe
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(address).split("%", 1)[0]).is_loopback for address in addresses
    )


SERVER_CREDENTIALS = "auth.tokens or grpc.tls_client_ca"
"""What turns authentication on for jq-server."""
WORKER_CREDENTIALS = "worker.token, worker.token_file or worker.tls_cert"
"""What a jq-worker presents when its deployment uses authentication."""


def exposure_problems(
    listeners: Iterable[tuple[str, str]],
    *,
    authenticated: bool,
    insecure: bool,
    credentials: str = SERVER_CREDENTIALS,
) -> list[str]:
    """One line per listener (`(setting name, host)`) that would be reachable from the network
    without authentication; empty when every listener is allowed. `credentials` names the
    settings that would configure it, for the message."""
    if authenticated or insecure:
        return []
    return [
        f"{setting} is {host or '(all interfaces)'}, which is reachable from the network, but no "
        f"authentication is configured ({credentials}); configure it, bind 127.0.0.1, or pass "
        "--insecure (grpc.insecure: true) on a network you trust"
        for setting, host in listeners
        if not is_loopback(host)
    ]
