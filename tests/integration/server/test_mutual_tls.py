"""TLS and mutual TLS on jq-server's gRPC port, with certificates made by the README's commands:
a listed client certificate is a caller with its scopes; an unlisted one is denied; a client
with no certificate or one from another CA never completes the handshake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from support.auth import Tokens, bearer
from support.certs import Pki, make_pki, make_untrusted_client
from support.server_harness import running_server

from jobq.domain.scopes import Scope
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import admin_service_pb2_grpc
from jobq.server.app import ServerApp


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("certs"))


@pytest.fixture
async def mtls_server(pki: Pki, db_dsn: str) -> AsyncIterator[tuple[ServerApp, Tokens]]:
    tokens = Tokens.new()
    overrides = {
        "grpc.tls_cert": pki.file("server.crt"),
        "grpc.tls_key": pki.file("server.key"),
        "grpc.tls_client_ca": pki.ca,
        "auth.certificates": ["ops:read+admin"],
        **tokens.settings(),
    }
    async with running_server(db_dsn, overrides) as (app, _):
        yield app, tokens


def _channel(app: ServerApp, pki: Pki, client: Pki | None, name: str | None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.read("ca.crt"),
        private_key=client.read(f"{name}.key") if client and name else None,
        certificate_chain=client.read(f"{name}.crt") if client and name else None,
    )
    return grpc.aio.secure_channel(f"127.0.0.1:{app.grpc_port}", credentials)


async def _list_queues(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()
) -> apb.ListQueuesResponse:
    stub = admin_service_pb2_grpc.AdminServiceStub(channel)
    return await stub.ListQueues(apb.ListQueuesRequest(), metadata=metadata, timeout=5)


async def test_a_listed_client_certificate_is_a_caller_with_its_scopes(
    mtls_server: tuple[ServerApp, Tokens], pki: Pki
) -> None:
    app, _ = mtls_server
    async with _channel(app, pki, pki, "ops") as channel:
        reply = await _list_queues(channel)
        assert [q.name for q in reply.queues] == ["default"]
        stub = admin_service_pb2_grpc.AdminServiceStub(channel)
        created = await stub.CreateQueue(apb.CreateQueueRequest(name="by-cert"), timeout=5)
        assert created.queue.name == "by-cert"


async def test_an_unlisted_client_certificate_has_no_scopes(
    mtls_server: tuple[ServerApp, Tokens], pki: Pki
) -> None:
    app, _ = mtls_server
    async with _channel(app, pki, pki, "worker-1") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await _list_queues(channel)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "CN=worker-1" in (denied.value.details() or "")
    assert "auth.certificates" in (denied.value.details() or "")


async def test_a_token_over_mutual_tls_speaks_for_itself(
    mtls_server: tuple[ServerApp, Tokens], pki: Pki
) -> None:
    """The certificate opens the connection; a bearer token, when sent, names the caller."""
    app, tokens = mtls_server
    async with _channel(app, pki, pki, "worker-1") as channel:
        reply = await _list_queues(channel, bearer(tokens.by_scope[Scope.READ]))
        assert reply.queues
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await _list_queues(channel, bearer(tokens.by_scope[Scope.SUBMIT]))
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("who", ["no certificate", "another CA's certificate"])
async def test_clients_without_a_trusted_certificate_never_get_in(
    mtls_server: tuple[ServerApp, Tokens], pki: Pki, tmp_path: Path, who: str
) -> None:
    app, tokens = mtls_server
    stranger = make_untrusted_client(tmp_path) if who != "no certificate" else None
    name = "intruder" if stranger else None
    async with _channel(app, pki, stranger, name) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            # Even with a valid token: the handshake itself fails.
            await _list_queues(channel, bearer(tokens.everything))
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_plain_text_client_cannot_talk_to_a_tls_server(
    mtls_server: tuple[ServerApp, Tokens],
) -> None:
    app, tokens = mtls_server
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _list_queues(channel, bearer(tokens.everything))
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_server_only_tls_with_tokens(pki: Pki, db_dsn: str) -> None:
    """TLS without client certificates: the token authenticates, TLS protects it in transit."""
    tokens = Tokens.new()
    overrides = {
        "grpc.tls_cert": pki.file("server.crt"),
        "grpc.tls_key": pki.file("server.key"),
        **tokens.settings(),
    }
    async with (
        running_server(db_dsn, overrides) as (app, _),
        _channel(app, pki, None, None) as channel,
    ):
        assert (await _list_queues(channel, bearer(tokens.by_scope[Scope.READ]))).queues
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _list_queues(channel)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
