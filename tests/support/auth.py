"""Credentials for tests: one token per scope, their server settings, and calls by method path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from jobq.domain.scopes import Scope
from jobq.domain.tokens import new_token_secret, token_digest
from jobq.rpc._gen import admin_service_pb2, job_service_pb2, worker_service_pb2


@dataclass(frozen=True)
class Tokens:
    """A secret per scope (token named after it) and one holding every scope ("all")."""

    by_scope: Mapping[Scope, str]
    everything: str

    @classmethod
    def new(cls) -> Tokens:
        return cls({scope: new_token_secret() for scope in Scope}, new_token_secret())

    def entries(self) -> list[str]:
        """`auth.tokens` in the compact NAME:SCOPE+SCOPE:SHA256 form."""
        entries = [f"{s.value}:{s.value}:{token_digest(t)}" for s, t in self.by_scope.items()]
        everything = "+".join(s.value for s in Scope)
        entries.append(f"all:{everything}:{token_digest(self.everything)}")
        return entries

    def env(self) -> dict[str, str]:
        return {"JQ_AUTH_TOKENS": ",".join(self.entries())}

    def settings(self) -> dict[str, object]:
        return {"auth.tokens": self.entries()}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


SERVICES: Sequence[ServiceDescriptor] = (
    job_service_pb2.DESCRIPTOR.services_by_name["JobService"],
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"],
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"],
)


def our_methods() -> list[MethodDescriptor]:
    return [method for service in SERVICES for method in service.methods]


def path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def message_class(descriptor: Any) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)  # type: ignore[no-any-return]


async def call(
    channel: grpc.aio.Channel,
    method: MethodDescriptor,
    request: Message,
    metadata: Sequence[tuple[str, str]] = (),
    deadline_s: float = 5.0,
) -> tuple[grpc.StatusCode, str]:
    """Call `method` with `request`; its status code and message. A server stream is read until
    its first message, its end or the deadline (DEADLINE_EXCEEDED then means it was open); a
    client stream sends `request` as its only message."""
    reply_class = message_class(method.output_type)
    try:
        if method.client_streaming:  # one request, then read until the first answer or the end
            bidi = channel.stream_stream(
                path(method),
                request_serializer=type(request).SerializeToString,
                response_deserializer=reply_class.FromString,
            )(metadata=tuple(metadata), timeout=deadline_s)
            await bidi.write(request)
            await bidi.done_writing()
            await bidi.read()
            await bidi.code()
        elif method.server_streaming:
            stream = channel.unary_stream(
                path(method),
                request_serializer=type(request).SerializeToString,
                response_deserializer=reply_class.FromString,
            )(request, metadata=tuple(metadata), timeout=deadline_s)
            await stream.read()
            stream.cancel()
        else:
            await channel.unary_unary(
                path(method),
                request_serializer=type(request).SerializeToString,
                response_deserializer=reply_class.FromString,
            )(request, metadata=tuple(metadata), timeout=deadline_s)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    if method.client_streaming:
        return await bidi.code(), await bidi.details() or ""
    return grpc.StatusCode.OK, ""


def empty_request(method: MethodDescriptor) -> Message:
    return message_class(method.input_type)()


__all__ = [
    "SERVICES",
    "Tokens",
    "bearer",
    "call",
    "empty_request",
    "message_class",
    "our_methods",
    "path",
]
