"""jq-ctl as a program: --help everywhere, one-line errors, connection options, configuration.

Most tests run the installed jq-ctl against a real jq-server; the token and TLS tests use a
small in-process gRPC server that records what jq-ctl sent.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import typer
import yaml
from support.ctl import failure, ok
from support.ctl import run_jq_ctl as jq_ctl
from support.processes import ServerFactory, free_port

from jobq import __version__
from jobq.ctl.cli import app
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import admin_service_pb2_grpc

SPEC_COMMANDS = {
    ("job", "submit"),
    ("job", "status"),
    ("job", "cancel"),
    ("job", "list"),
    ("job", "logs"),
    ("job", "retry"),
    ("queue", "list"),
    ("queue", "create"),
    ("queue", "delete"),
    ("queue", "stats"),
    ("worker", "list"),
    ("worker", "drain"),
    ("worker", "shutdown"),
    ("system", "status"),
    ("version",),
}


def command_paths() -> list[tuple[str, ...]]:
    """Every group and command of jq-ctl, from its typer app."""
    paths: list[tuple[str, ...]] = [()]
    pending: list[tuple[tuple[str, ...], Any]] = [((), typer.main.get_command(app))]
    while pending:
        path, command = pending.pop()
        for name, sub in getattr(command, "commands", {}).items():
            paths.append((*path, name))
            pending.append(((*path, name), sub))
    return sorted(paths)


def test_every_spec_command_exists_and_every_level_has_help() -> None:
    paths = command_paths()
    assert set(paths) >= SPEC_COMMANDS
    for path in paths:
        result = jq_ctl(*path, "--help")
        assert result.returncode == 0, (path, result.stderr)
        assert "Usage: jq-ctl" in result.stdout, path
        assert result.stderr == ""
    root = jq_ctl("--help").stdout
    for flag in ("--server-addr", "--output", "--timeout", "--tls-ca", "--tls-cert", "--tls-key"):
        assert flag in root
    assert "--token" in root
    assert "--config" in root


def test_version() -> None:
    assert ok(jq_ctl("version")) == f"jq-ctl {__version__}\n"
    assert json.loads(ok(jq_ctl("-o", "json", "version"))) == {"version": __version__}
    assert ok(jq_ctl("--version")) == f"jq-ctl {__version__}\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["job", "submit", "--payload", "{oops"], "--payload is not valid JSON"),
        (["job", "submit"], "give exactly one of --payload, --payload-file or -- CMD ARGS"),
        (["job", "submit", "--payload-file", "/nonexistent.json"], "cannot read --payload-file"),
        (["job", "submit", "--delay", "5x", "--", "true"], "'5x' is not a duration"),
        (
            ["job", "submit", "--delay", "5m", "--not-before", "2030-01-01", "--", "true"],
            "give --delay or --not-before, not both",
        ),
        (["job", "submit", "--not-before", "soon", "--", "true"], "not an ISO 8601 date-time"),
        (["job", "submit", "--priority", "10", "--", "true"], "--priority"),
        (["job", "status"], "Missing argument 'ID'"),
        (["job", "frobnicate"], "No such command 'frobnicate'"),
        (["queue", "create", "q", "--ttl", "forever"], "'forever' is not a duration"),
        (["--output", "xml", "version"], "ctl.output"),
        (["--tls-ca", "/nonexistent/ca.pem", "system", "status"], "cannot read --tls-ca file"),
        (["--tls-cert", "/etc/hostname", "system", "status"], "--tls-cert and --tls-key"),
        (["--config", "/nonexistent/jobq.yaml", "version"], "/nonexistent/jobq.yaml"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], says: str) -> None:
    unreachable = {"JQ_CTL_SERVER_ADDR": f"127.0.0.1:{free_port()}"}
    assert says in failure(jq_ctl(*args, env=unreachable), code=2)


def test_an_unreachable_server_is_named() -> None:
    port = free_port()
    message = failure(jq_ctl("--server-addr", f"127.0.0.1:{port}", "system", "status"))
    assert message == f"cannot reach jq-server at 127.0.0.1:{port} (connection refused)"
    message = failure(jq_ctl("job", "list", env={"JQ_CTL_SERVER_ADDR": f"127.0.0.1:{port}"}))
    assert message.startswith(f"cannot reach jq-server at 127.0.0.1:{port}")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 50051)) == 0:
            return  # something serves the default address here; nothing more to check
    assert failure(jq_ctl("queue", "list")).startswith("cannot reach jq-server at localhost:50051")


def test_a_server_that_does_not_answer_hits_the_deadline() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) but never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        result = jq_ctl("--server-addr", address, "--timeout", "0.5", "system", "status")
        assert failure(result) == "jq-server did not answer within 0.5s"
        assert time.monotonic() - started < 10
        result = jq_ctl(
            "queue", "list", env={"JQ_CTL_SERVER_ADDR": address, "JQ_CTL_TIMEOUT_S": "1"}
        )
        assert failure(result) == "jq-server did not answer within 1s"


async def test_unknown_and_malformed_ids(start_server: ServerFactory, db_dsn: str) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    env = {"JQ_CTL_SERVER_ADDR": f"127.0.0.1:{server.grpc_port}"}
    unknown = "01a20275-85b7-7060-96a7-b813ac40ca99"
    for command in ("status", "cancel", "logs", "retry"):
        assert failure(jq_ctl("job", command, unknown, env=env)) == f"job {unknown} not found"
    assert failure(jq_ctl("job", "status", "3f2a", env=env)) == (
        "malformed job id '3f2a': expected a UUID"
    )
    assert failure(jq_ctl("job", "submit", "-q", "nope", "--", "true", env=env)) == (
        "queue 'nope' not found"
    )


async def test_options_from_flags_environment_and_file(
    start_server: ServerFactory, db_dsn: str, tmp_path: Path
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    address = f"127.0.0.1:{server.grpc_port}"
    nowhere = f"127.0.0.1:{free_port()}"
    config = tmp_path / "jobq.yaml"
    config.write_text(yaml.safe_dump({"ctl": {"server_addr": address, "output": "json"}}))

    from_file = json.loads(ok(jq_ctl("--config", str(config), "queue", "list")))
    assert [q["name"] for q in from_file["queues"]] == ["default"]
    env_beats_file = jq_ctl("--config", str(config), "queue", "list", env={"JQ_CTL_OUTPUT": "yaml"})
    assert yaml.safe_load(ok(env_beats_file))["queues"][0]["name"] == "default"
    flag_beats_env = jq_ctl(
        "--server-addr", address, "-o", "json", "queue", "list",
        env={"JQ_CTL_SERVER_ADDR": nowhere, "JQ_CTL_OUTPUT": "yaml"},
    )  # fmt: skip
    assert json.loads(ok(flag_beats_env))["queues"][0]["name"] == "default"
    assert "NAME" in ok(jq_ctl("queue", "list", env={"JQ_CTL_SERVER_ADDR": address}))

    # With no authentication configured (loopback only) a token is not needed and not checked
    ok(jq_ctl("--server-addr", address, "--token", "s3cr3t", "system", "status"))
    ok(jq_ctl("system", "status", env={"JQ_CTL_SERVER_ADDR": address, "JQ_CTL_TOKEN": "s3cr3t"}))


@dataclass
class Recorder(admin_service_pb2_grpc.AdminServiceServicer):
    """An AdminService whose GetSystemStatus remembers each call's metadata."""

    calls: list[dict[str, str]] = field(default_factory=list)

    def GetSystemStatus(
        self, request: apb.GetSystemStatusRequest, context: grpc.ServicerContext
    ) -> apb.GetSystemStatusResponse:
        self.calls.append({k: str(v) for k, v in context.invocation_metadata()})
        return apb.GetSystemStatusResponse(version="fake")


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, grpc.Server]]:
    servicer = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    yield servicer, server
    server.stop(grace=None)


def test_the_token_is_sent_as_bearer_metadata(
    recorder: tuple[Recorder, grpc.Server], tmp_path: Path
) -> None:
    servicer, server = recorder
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    address = f"127.0.0.1:{port}"
    ok(jq_ctl("--server-addr", address, "--token", "flag-token", "system", "status"))
    ok(jq_ctl("system", "status", env={"JQ_CTL_SERVER_ADDR": address, "JQ_CTL_TOKEN": "env-token"}))
    ok(jq_ctl("--server-addr", address, "system", "status"))
    token_file = tmp_path / "token"
    token_file.write_text("  file-token\n")
    ok(jq_ctl("--server-addr", address, "--token-file", str(token_file), "system", "status"))
    env = {"JQ_CTL_SERVER_ADDR": address, "JQ_CTL_TOKEN_FILE": str(token_file)}
    ok(jq_ctl("system", "status", env=env))
    tokens = [call.get("authorization") for call in servicer.calls]
    assert tokens == [
        "Bearer flag-token",
        "Bearer env-token",
        None,
        "Bearer file-token",
        "Bearer file-token",
    ]


def test_token_file_mistakes_are_usage_errors_that_hide_the_token(tmp_path: Path) -> None:
    unreachable = {"JQ_CTL_SERVER_ADDR": f"127.0.0.1:{free_port()}"}
    missing = tmp_path / "missing"
    assert failure(
        jq_ctl("--token-file", str(missing), "system", "status", env=unreachable), code=2
    ) == (f"cannot read --token-file {missing}: No such file or directory")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert failure(
        jq_ctl("--token-file", str(empty), "queue", "list", env=unreachable), code=2
    ) == (f"--token-file {empty} is empty")
    two = tmp_path / "two"
    two.write_text("s3cr3t-one s3cr3t-two\n")
    said = failure(jq_ctl("--token-file", str(two), "queue", "list", env=unreachable), code=2)
    assert "s3cr3t" not in said
    both = jq_ctl("--token", "s3cr3t", "--token-file", str(two), "queue", "list", env=unreachable)
    assert "not both" in failure(both, code=2)
    assert "s3cr3t" not in both.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_and_mutual_tls(recorder: tuple[Recorder, grpc.Server], tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    servicer, server = recorder
    credentials = grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=cert.read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    address = f"127.0.0.1:{port}"
    mutual = ["--tls-ca", str(cert), "--tls-cert", str(cert), "--tls-key", str(key)]
    status = json.loads(
        ok(jq_ctl("--server-addr", address, *mutual, "-o", "json", "system", "status"))
    )
    assert status["version"] == "fake"
    plain = failure(jq_ctl("--server-addr", address, "--timeout", "5", "system", "status"))
    assert plain.startswith(f"cannot reach jq-server at {address}")
    no_client_cert = failure(
        jq_ctl(
            "--server-addr", address, "--tls-ca", str(cert), "--timeout", "5", "system", "status"
        )
    )
    assert no_client_cert.startswith(f"cannot reach jq-server at {address}")
    not_a_key = ["--tls-ca", str(cert), "--tls-cert", str(cert), "--tls-key", str(cert)]
    bad_key = failure(
        jq_ctl("--server-addr", address, *not_a_key, "--timeout", "5", "system", "status")
    )
    assert bad_key == f"cannot reach jq-server at {address} (TLS handshake failed)"
    assert len(servicer.calls) == 1
