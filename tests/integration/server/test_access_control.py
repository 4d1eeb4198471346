"""Every RPC, over real gRPC against a real server: no credential, a wrong token, the wrong scope
and the right scope (the security issue's per-RPC matrix), plus the scope table's coverage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.auth import Tokens, bearer, call, empty_request, our_methods, path
from support.server_harness import running_server

from jobq.domain.scopes import Scope
from jobq.domain.tokens import new_token_secret
from jobq.rpc.method_scopes import METHOD_SCOPES, PUBLIC_METHODS
from jobq.server.app import ServerApp

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
METHODS = our_methods()


@pytest.fixture
async def secured(db_dsn: str) -> AsyncIterator[tuple[ServerApp, grpc.aio.Channel, Tokens]]:
    tokens = Tokens.new()
    async with running_server(db_dsn, tokens.settings()) as (app, client):
        yield app, client.channel, tokens


def test_the_scope_table_covers_every_method_of_our_services() -> None:
    missing = [path(m) for m in METHODS if path(m) not in METHOD_SCOPES]
    assert missing == []


async def test_every_served_method_is_guarded_or_public(db_dsn: str) -> None:
    async with running_server(db_dsn) as (app, _):
        served = set(app.served_methods)
    assert {path(m) for m in METHODS} <= served
    assert "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" in served
    assert served <= set(METHOD_SCOPES) | PUBLIC_METHODS


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
async def test_each_rpc_needs_a_credential_with_its_scope(
    secured: tuple[ServerApp, grpc.aio.Channel, Tokens], method: object
) -> None:
    _, channel, tokens = secured
    from google.protobuf.descriptor import MethodDescriptor

    assert isinstance(method, MethodDescriptor)
    needed = METHOD_SCOPES[path(method)]
    request = empty_request(method)

    code, message = await call(channel, method, request)
    assert code is UNAUTHENTICATED, message
    assert message.startswith("missing credential")

    code, message = await call(channel, method, request, bearer(new_token_secret()))
    assert code is UNAUTHENTICATED, message
    assert "invalid bearer token" in message

    for scope, secret in tokens.by_scope.items():
        if scope is needed:
            continue
        code, message = await call(channel, method, request, bearer(secret))
        assert code is PERMISSION_DENIED, (scope, message)
        assert f"token '{scope.value}' lacks the {needed.value} scope" in message
        assert method.name in message

    for secret in (tokens.by_scope[needed], tokens.everything):
        code, message = await call(channel, method, request, bearer(secret), deadline_s=2)
        # Admitted: whatever the empty request earns (INVALID_ARGUMENT, NOT_FOUND, OK ...).
        assert code not in (UNAUTHENTICATED, PERMISSION_DENIED), message
        assert code is not grpc.StatusCode.INTERNAL, message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Basic dXNlcjpwdw==", "malformed authorization"),
        ("Bearer", "malformed authorization"),
        ("Bearer ", "malformed authorization"),
        ("Bearer " + "x" * 2000, "malformed authorization"),
        ("bearer not-a-token", "invalid bearer token"),
    ],
)
async def test_malformed_authorization_metadata_is_unauthenticated(
    secured: tuple[ServerApp, grpc.aio.Channel, Tokens], value: str, expected: str
) -> None:
    _, channel, _ = secured
    [method] = [m for m in METHODS if m.name == "ListQueues"]
    code, message = await call(channel, method, empty_request(method), (("authorization", value),))
    assert code is UNAUTHENTICATED
    assert expected in message
    assert "x" * 50 not in message  # the offered secret is never echoed


async def test_health_needs_no_credential_when_auth_is_on(
    secured: tuple[ServerApp, grpc.aio.Channel, Tokens],
) -> None:
    _, channel, _ = secured
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_needs_the_read_scope(
    secured: tuple[ServerApp, grpc.aio.Channel, Tokens],
) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    _, channel, tokens = secured
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    ask = reflection_pb2.ServerReflectionRequest(list_services="")

    async def list_services(metadata: tuple[tuple[str, str], ...]) -> list[str]:
        call = stub.ServerReflectionInfo(iter([ask]), metadata=metadata, timeout=5)
        names = []
        async for reply in call:
            names += [s.name for s in reply.list_services_response.service]
        return names

    for metadata in ((), bearer(tokens.by_scope[Scope.SUBMIT])):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await list_services(metadata)
        assert refused.value.code() in (UNAUTHENTICATED, PERMISSION_DENIED)
    names = await list_services(bearer(tokens.by_scope[Scope.READ]))
    assert "jobq.v1.JobService" in names


async def test_reflection_can_be_turned_off(db_dsn: str) -> None:
    async with running_server(db_dsn, {"grpc.reflection": False}) as (app, _):
        assert not [m for m in app.served_methods if "Reflection" in m]


async def test_with_no_auth_configured_every_call_is_admitted_as_anonymous(db_dsn: str) -> None:
    async with running_server(db_dsn) as (app, client):
        assert not app.authenticator.enabled
        for method in METHODS:
            code, message = await call(client.channel, method, empty_request(method), deadline_s=2)
            assert code not in (UNAUTHENTICATED, PERMISSION_DENIED), (method.name, message)


async def test_an_unlisted_certificate_or_a_token_of_another_server_changes_nothing(
    secured: tuple[ServerApp, grpc.aio.Channel, Tokens], db_dsn: str
) -> None:
    """A refused CreateQueue writes nothing (the refusal happens before the servicer)."""
    import asyncpg

    _, channel, tokens = secured
    [method] = [m for m in METHODS if m.name == "CreateQueue"]
    request = empty_request(method)
    request.name = "sneaky"  # type: ignore[attr-defined]
    for metadata in ((), bearer(tokens.by_scope[Scope.READ]), bearer(new_token_secret())):
        code, _ = await call(channel, method, request, metadata)
        assert code in (UNAUTHENTICATED, PERMISSION_DENIED)
    conn = await asyncpg.connect(db_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM queues WHERE name = 'sneaky'") == 0
    finally:
        await conn.close()
    code, _ = await call(channel, method, request, bearer(tokens.by_scope[Scope.ADMIN]))
    assert code is grpc.StatusCode.OK
    await asyncio.sleep(0)
