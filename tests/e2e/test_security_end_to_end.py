"""The real jq-server, jq-worker and jq-ctl with authentication on: bearer tokens with scopes,
and mutual TLS with certificates made by the README's commands; plus a grpcurl-style outside
client that learns the API by server reflection."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from support.auth import Tokens, bearer
from support.certs import Pki, make_pki, make_untrusted_client
from support.ctl import failure, ok, run_jq_ctl
from support.processes import ServerFactory, ServerProcess, WorkerFactory

from jobq.domain.scopes import Scope


def _ctl(server: ServerProcess, *args: str, **env: str) -> object:
    return run_jq_ctl(*args, env={"JQ_CTL_SERVER_ADDR": f"127.0.0.1:{server.grpc_port}", **env})


def _wait_done(server: ServerProcess, job_id: str, env: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        result = _ctl(server, "--output", "json", "job", "status", job_id, **env)
        job = json.loads(ok(result))["job"]  # type: ignore[arg-type]
        if job["status"] in ("DONE", "DEAD_LETTERED"):
            return job  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


async def test_tokens_gate_every_program(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str, tmp_path: Path
) -> None:
    tokens = Tokens.new()
    server = start_server({"JQ_DB_DSN": db_dsn, **tokens.env()})
    token_file = tmp_path / "worker.token"
    token_file.write_text(tokens.by_scope[Scope.WORKER] + "\n")
    token_file.chmod(0o600)
    worker = start_worker(server, "--token-file", str(token_file))
    submitter = {"JQ_CTL_TOKEN": tokens.by_scope[Scope.SUBMIT]}
    reader = {"JQ_CTL_TOKEN": tokens.by_scope[Scope.READ]}

    job_id = ok(_ctl(server, "job", "submit", "--", "echo", "hello", **submitter)).strip()  # type: ignore[arg-type]
    job = _wait_done(server, job_id, reader)
    assert (job["status"], job["result"]) == ("DONE", "hello\n")

    missing = failure(_ctl(server, "job", "status", job_id))  # type: ignore[arg-type]
    assert "missing credential" in missing
    wrong = failure(_ctl(server, "job", "status", job_id, JQ_CTL_TOKEN="jq_not-a-real-one"))  # type: ignore[arg-type]
    assert "invalid bearer token" in wrong
    denied = failure(_ctl(server, "queue", "delete", "default", **submitter))  # type: ignore[arg-type]
    assert "token 'submit' lacks the admin scope needed by AdminService/DeleteQueue" in denied
    assert "jq_not-a-real-one" not in server.log()
    for secret in (*tokens.by_scope.values(), tokens.everything):
        assert secret not in server.log()
        assert secret not in worker.log()
    assert worker.terminate() == 0


async def test_a_worker_without_the_worker_scope_gets_nothing(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    tokens = Tokens.new()
    server = start_server({"JQ_DB_DSN": db_dsn, **tokens.env()})
    worker = start_worker(server, env={"JQ_WORKER_TOKEN": tokens.by_scope[Scope.SUBMIT]})
    deadline = time.monotonic() + 30
    while "lacks the worker scope needed by WorkerService/RegisterWorker" not in worker.log():
        assert time.monotonic() < deadline, worker.log()
        await asyncio.sleep(0.1)
    listed = json.loads(
        ok(_ctl(server, "--output", "json", "worker", "list", JQ_CTL_TOKEN=tokens.everything))  # type: ignore[arg-type]
    )
    assert listed["workers"] == []


def _start_tls_server(start_server: ServerFactory, pki: Pki, env: dict[str, str]) -> ServerProcess:
    server = start_server({**pki.server_env(), **env}, wait=False)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.read("ca.crt"),
        private_key=pki.read("ops.key"),
        certificate_chain=pki.read("ops.crt"),
    )
    deadline = time.monotonic() + 30
    while True:
        assert server.process.poll() is None, server.log()
        with grpc.secure_channel(f"127.0.0.1:{server.grpc_port}", credentials) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=0.5
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return server
            except grpc.RpcError:
                pass
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)


async def test_mutual_tls_end_to_end(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    server = _start_tls_server(
        start_server,
        pki,
        {"JQ_DB_DSN": db_dsn, "JQ_AUTH_CERTIFICATES": "worker-1:worker,ops:read+admin+submit"},
    )
    worker = start_worker(
        server,
        "--tls-ca",
        pki.ca,
        "--tls-cert",
        pki.file("worker-1.crt"),
        "--tls-key",
        pki.file("worker-1.key"),
    )
    ops = {
        "JQ_CTL_TLS_CA": pki.ca,
        "JQ_CTL_TLS_CERT": pki.file("ops.crt"),
        "JQ_CTL_TLS_KEY": pki.file("ops.key"),
    }
    job_id = ok(_ctl(server, "job", "submit", "--", "echo", "over tls", **ops)).strip()  # type: ignore[arg-type]
    job = _wait_done(server, job_id, ops)
    assert (job["status"], job["result"]) == ("DONE", "over tls\n")

    stranger = make_untrusted_client(tmp_path)
    intruder = {
        "JQ_CTL_TLS_CA": pki.ca,
        "JQ_CTL_TLS_CERT": stranger.file("intruder.crt"),
        "JQ_CTL_TLS_KEY": stranger.file("intruder.key"),
    }
    refused = failure(_ctl(server, "job", "status", job_id, **intruder))  # type: ignore[arg-type]
    assert refused.startswith(f"cannot reach jq-server at 127.0.0.1:{server.grpc_port}")
    no_certificate = failure(_ctl(server, "job", "status", job_id, JQ_CTL_TLS_CA=pki.ca))  # type: ignore[arg-type]
    assert no_certificate.startswith("cannot reach jq-server")
    worker_cert = {
        **ops,
        "JQ_CTL_TLS_CERT": pki.file("worker-1.crt"),
        "JQ_CTL_TLS_KEY": pki.file("worker-1.key"),
    }
    denied = failure(_ctl(server, "queue", "list", **worker_cert))  # type: ignore[arg-type]
    assert "cert:worker-1 lacks the read scope needed by AdminService/ListQueues" in denied
    assert worker.terminate() == 0


async def test_a_grpcurl_style_client_learns_the_api_by_reflection(
    start_server: ServerFactory, db_dsn: str
) -> None:
    """An outside client with nothing of ours but the address and a token: it lists the
    services, fetches their descriptors and calls SubmitJob built from them."""
    tokens = Tokens.new()
    server = start_server({"JQ_DB_DSN": db_dsn, **tokens.env()})
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as plain:
        # Without a credential reflection says nothing.
        with pytest.raises(grpc.RpcError) as refused:
            ProtoReflectionDescriptorDatabase(plain).get_services()
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]

    read_token = bearer(tokens.by_scope[Scope.READ])[0][1]
    credentials = grpc.composite_channel_credentials(
        grpc.local_channel_credentials(),
        grpc.access_token_call_credentials(read_token.removeprefix("Bearer ")),
    )
    with grpc.secure_channel(f"127.0.0.1:{server.grpc_port}", credentials) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = database.get_services()
        assert "jobq.v1.JobService" in services
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName("jobq.v1.JobService")
        method = service.methods_by_name["SubmitJob"]
        request_class = message_factory.GetMessageClass(method.input_type)
        reply_class = message_factory.GetMessageClass(method.output_type)
        submit = channel.unary_unary(
            "/jobq.v1.JobService/SubmitJob",
            request_serializer=request_class.SerializeToString,
            response_deserializer=reply_class.FromString,
        )
        request = request_class(queue_name="default", payload=b'{"command": ["id"]}')
        with pytest.raises(grpc.RpcError) as denied:  # a read token may not submit
            submit(request, timeout=5)
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        reply = submit(request, metadata=bearer(tokens.by_scope[Scope.SUBMIT]), timeout=5)
        assert reply.job_id
