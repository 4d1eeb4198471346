"""jq-server's listeners, as a user starts it: loopback unless authentication is configured, no
port sharing, and one warning when authentication is off."""

from __future__ import annotations

import socket
import subprocess

from support.auth import Tokens
from support.processes import ServerFactory, free_port, program


def _start_and_fail(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [program("jq-server"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_non_loopback_address_without_auth_is_refused_before_anything_starts(
    tmp_path: object,
) -> None:
    result = _start_and_fail(
        {"JQ_GRPC_HOST": "0.0.0.0", "JQ_HEALTH_PORT": "0", "JQ_METRICS_PORT": "0"},
        "--grpc-port",
        str(free_port()),
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(
        "jq-server: grpc.host is 0.0.0.0, which is reachable from the network"
    )
    assert "--insecure" in lines[0]
    assert "Traceback" not in result.stderr
    assert "using embedded PostgreSQL" not in result.stdout  # nothing started


def test_health_and_metrics_follow_the_same_rule() -> None:
    result = _start_and_fail(
        {"JQ_HEALTH_HOST": "0.0.0.0", "JQ_HEALTH_PORT": str(free_port()), "JQ_METRICS_PORT": "0"},
        "--grpc-port",
        str(free_port()),
    )
    assert result.returncode == 2
    assert result.stderr.startswith("jq-server: health.host is 0.0.0.0")


async def test_a_second_server_on_a_taken_port_fails_with_address_in_use(
    start_server: ServerFactory, db_dsn: str
) -> None:
    first = start_server({"JQ_DB_DSN": db_dsn})
    second = start_server({"JQ_DB_DSN": db_dsn}, port=first.grpc_port, wait=False)
    assert second.process.wait(timeout=60) == 1
    log = second.log()
    assert f"cannot listen on 127.0.0.1:{first.grpc_port}" in log
    assert "address in use" in log
    assert "Traceback" not in log
    assert first.process.poll() is None  # the first one serves on


async def test_a_taken_health_port_fails_with_address_in_use(
    start_server: ServerFactory, db_dsn: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = start_server({"JQ_DB_DSN": db_dsn, "JQ_HEALTH_PORT": str(port)}, wait=False)
        assert server.process.wait(timeout=60) == 1
    assert f"cannot listen on 127.0.0.1:{port}: address in use" in server.log()


async def test_with_no_auth_the_server_warns_once_and_with_tokens_it_does_not(
    start_server: ServerFactory, db_dsn: str
) -> None:
    open_server = start_server({"JQ_DB_DSN": db_dsn})
    tokens = Tokens.new()
    secured = start_server({"JQ_DB_DSN": db_dsn, **tokens.env()})
    open_server.terminate()
    secured.terminate()
    assert open_server.log().count('"action": "auth.disabled"') == 1
    assert "auth.disabled" not in secured.log()
    for secret in [*tokens.by_scope.values(), tokens.everything]:
        assert secret not in secured.log()
