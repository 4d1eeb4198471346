"""Random field values for every request message of every RPC, sent to a real jq-server: it
never crashes and answers only documented status codes (never INTERNAL or UNKNOWN).

Requests are built from the proto descriptors, so a new RPC or field is fuzzed without touching
this file. The caller holds every scope, so each call reaches its servicer."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.auth import Tokens, bearer, message_class, our_methods, path
from support.processes import ServerFactory

METHODS = our_methods()

ANSWERS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
"""What the protos document as answers to a well-authorised call."""
STREAM_ANSWERS = ANSWERS | {grpc.StatusCode.DEADLINE_EXCEEDED}
"""A stream that opened stays open until the client's deadline."""

_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=200)
_STRINGS = st.one_of(
    _TEXT,
    st.uuids().map(str),
    st.sampled_from(
        ["", "default", "x" * 129, "a b", "../etc", "00000000-0000-0000-0000-000000000000"]
    ),
    st.text(alphabet="abcdefABC0123456789-_.", min_size=1, max_size=130),
)
_JSON_PAYLOADS = st.sampled_from(
    [
        b'{"command": ["true"]}',
        b'{"command": ["id"], "env": {"LD_PRELOAD": "/tmp/x.so"}}',
        b'{"handler": "os:system", "args": ["id"]}',
        b'{"command": [], "timeout_s": -5}',
        b"not json",
        b"{}",
    ]
)
_BYTES = st.one_of(st.binary(max_size=300), _JSON_PAYLOADS)
_INTS = {
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
}
_SMALL_INTS = st.integers(-5, 2000)


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_STRING:
        return _STRINGS
    if field.type == FieldDescriptor.TYPE_BYTES:
        return _BYTES
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if field.type == FieldDescriptor.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 50))
    return st.one_of(_SMALL_INTS, _INTS[field.type])


def _message(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    cls = message_class(descriptor)
    fields = list(descriptor.fields)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for field in fields:
            if not draw(st.booleans()):
                continue  # leave it unset
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                if depth > 2:
                    continue
                sub = _message(field.message_type, depth + 1)
                if field.is_repeated:
                    for item in draw(st.lists(sub, max_size=4)):
                        getattr(message, field.name).add().CopyFrom(item)
                else:
                    getattr(message, field.name).CopyFrom(draw(sub))
            elif field.is_repeated:
                getattr(message, field.name).extend(draw(st.lists(_scalar(field), max_size=6)))
            else:
                setattr(message, field.name, draw(_scalar(field)))
        return message

    return build()


_REQUESTS = {path(m): _message(m.input_type) for m in METHODS}


def _call(
    channel: grpc.Channel, method: MethodDescriptor, request: Message, token: str, copies: int
) -> Any:
    reply = message_class(method.output_type)
    metadata = bearer(token)
    try:
        if method.client_streaming:  # the request, and as many copies of it, on one stream
            replies = channel.stream_stream(
                path(method),
                request_serializer=type(request).SerializeToString,
                response_deserializer=reply.FromString,
            )(iter([request] * copies), metadata=metadata, timeout=10)
            for _ in replies:
                pass
        elif method.server_streaming:
            stream = channel.unary_stream(
                path(method),
                request_serializer=type(request).SerializeToString,
                response_deserializer=reply.FromString,
            )(request, metadata=metadata, timeout=1.0)
            next(iter(stream), None)
            stream.cancel()
        else:
            channel.unary_unary(
                path(method),
                request_serializer=type(request).SerializeToString,
                response_deserializer=reply.FromString,
            )(request, metadata=metadata, timeout=10)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, ""


def _fuzz(port: int, token: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:

        @settings(
            max_examples=400,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(data=st.data(), method=st.sampled_from(METHODS))
        def one_call(data: st.DataObject, method: MethodDescriptor) -> None:
            request = data.draw(_REQUESTS[path(method)], label=method.name)
            copies = data.draw(st.integers(1, 3), label="copies") if method.client_streaming else 1
            code, details = _call(channel, method, request, token, copies)
            allowed = STREAM_ANSWERS if method.server_streaming else ANSWERS
            assert code in allowed, (method.name, code, details, request)
            assert "Traceback" not in (details or "")

        one_call()
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_random_requests_to_every_rpc_get_documented_answers(
    start_server: ServerFactory, db_dsn: str
) -> None:
    tokens = Tokens.new()
    server = start_server({"JQ_DB_DSN": db_dsn, **tokens.env()})
    await asyncio.to_thread(_fuzz, server.grpc_port, tokens.everything)
    assert server.process.poll() is None
    log = server.log()
    assert "unexpected error" not in log
    assert "Traceback" not in log
