"""The door every RPC passes: authentication, the scope check and the request size limit.

Each method handler of the served services (ours, reflection) is wrapped once, when the server
is built, so a call pays one extra Python frame and no lookup; the standard health service is
left unwrapped (probes carry no credentials). Wrapping handlers rather than installing a gRPC
server interceptor keeps grpc.aio's registered-method fast path and gives the check the TLS peer
(`context.auth_context()`), which interceptors do not see.

The generated `add_*Servicer_to_server` functions register handlers on whatever object they are
given; `ServiceRegistrar` stands in for the server to collect them, and `install` puts the
guarded handlers on the real server.

Requests larger than `grpc.max_message_bytes` get an answer that names the limits: gRPC's own
limit is set higher (`core_receive_limit`) so that such a request still reaches our
deserializer, which refuses it unparsed; only requests beyond that hear gRPC's own message.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import grpc

from jobq.domain.errors import JobqError
from jobq.observability.logging_setup import get_logger
from jobq.rpc.method_scopes import METHOD_SCOPES, PUBLIC_METHODS
from jobq.rpc.status_codes import status_for
from jobq.server.authentication import AUTHORIZATION_METADATA_KEY, Authenticator
from jobq.server.caller import set_caller

__all__ = ["CallGuard", "ServiceRegistrar", "core_receive_limit"]

log = get_logger("jobq.auth")

Context = grpc.aio.ServicerContext[Any, Any]
MethodHandler = Any
"""A `MethodHandler` of grpc.aio behaviours (the stubs type the sync API only)."""


def core_receive_limit(max_message_bytes: int) -> int:
    """gRPC's own receive limit: room above ours for a clear refusal of oversized requests."""
    return max_message_bytes + max(max_message_bytes, 16 * 1024 * 1024)


class _TooLarge:
    """Stands in for a request that was not parsed because it is over the limit."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


class CallGuard:
    """Wraps method handlers so that every call is authenticated, authorised and size-checked
    before the servicer sees it."""

    def __init__(
        self, authenticator: Authenticator, *, max_message_bytes: int, max_payload_bytes: int
    ) -> None:
        self._authenticator = authenticator
        self._max_message_bytes = max_message_bytes
        self._max_payload_bytes = max_payload_bytes

    def wrap(self, method: str, handler: MethodHandler) -> MethodHandler:
        """The handler of `method` (`/package.Service/Method`), guarded. Raises KeyError for a
        method that is neither public nor in the scope table: nothing is served unguarded."""
        if method in PUBLIC_METHODS:
            return handler
        scope = METHOD_SCOPES[method]
        authenticator = self._authenticator
        refuse_too_large = self._refuse_too_large

        async def admit(context: Context) -> None:
            if not authenticator.enabled:  # open mode: the caller stays ANONYMOUS
                return
            try:
                metadata = context.invocation_metadata() or ()
                authorization: str | None = None
                for key, value in metadata:
                    if key == AUTHORIZATION_METADATA_KEY and isinstance(value, str):
                        authorization = value
                        break
                auth_context = context.auth_context() if authorization is None else None
                caller = authenticator.authenticate(authorization, auth_context)
                authenticator.authorize(caller, scope, method)
                set_caller(caller)
            except JobqError as exc:
                code, message = status_for(exc)
                log.warning(
                    "call refused", action="auth.refused", rpc=method, code=code.name, error=message
                )
                await context.abort(code, message)

        behaviour: Callable[..., Any]
        if handler.unary_unary is not None:
            inner: Callable[..., Any] = handler.unary_unary

            async def unary_unary(request: Any, context: Context) -> Any:
                await admit(context)
                if type(request) is _TooLarge:
                    await refuse_too_large(request, context)
                return await inner(request, context)

            behaviour = unary_unary
            return handler._replace(
                unary_unary=behaviour,
                request_deserializer=self._sized(handler.request_deserializer),
            )
        if handler.unary_stream is not None:
            stream: Callable[..., Any] = handler.unary_stream
            if inspect.isasyncgenfunction(stream):

                async def unary_stream_gen(request: Any, context: Context) -> AsyncIterator[Any]:
                    await admit(context)
                    if type(request) is _TooLarge:
                        await refuse_too_large(request, context)
                    async for reply in stream(request, context):
                        yield reply

                behaviour = unary_stream_gen
            else:  # writes with context.write(); grpc.aio tells the two kinds apart

                async def unary_stream(request: Any, context: Context) -> None:
                    await admit(context)
                    if type(request) is _TooLarge:
                        await refuse_too_large(request, context)
                    await stream(request, context)

                behaviour = unary_stream
            return handler._replace(
                unary_stream=behaviour,
                request_deserializer=self._sized(handler.request_deserializer),
            )
        if handler.stream_stream is not None:
            streams: Callable[..., Any] = handler.stream_stream

            async def within_limit(requests: AsyncIterator[Any], context: Context) -> Any:
                # Each request of the stream is refused unparsed when too large, as a unary one.
                async for request in requests:
                    if type(request) is _TooLarge:
                        await refuse_too_large(request, context)
                    yield request

            if inspect.isasyncgenfunction(streams):

                async def stream_stream_gen(
                    requests: AsyncIterator[Any], context: Context
                ) -> AsyncIterator[Any]:
                    await admit(context)
                    async for reply in streams(within_limit(requests, context), context):
                        yield reply

                behaviour = stream_stream_gen
            else:  # writes with context.write()

                async def stream_stream(requests: AsyncIterator[Any], context: Context) -> None:
                    await admit(context)
                    await streams(within_limit(requests, context), context)

                behaviour = stream_stream
            return handler._replace(
                stream_stream=behaviour,
                request_deserializer=self._sized(handler.request_deserializer),
            )
        raise TypeError(f"no guard for the kind of handler {method} has")

    def _sized(self, deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
        if deserializer is None:
            return None
        limit = self._max_message_bytes

        def deserialize(raw: bytes) -> Any:
            if len(raw) > limit:
                return _TooLarge(len(raw))
            return deserializer(raw)

        return deserialize

    async def _refuse_too_large(self, request: _TooLarge, context: Context) -> None:
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"request is {request.size} bytes; jq-server accepts messages of at most "
            f"{self._max_message_bytes} bytes (grpc.max_message_bytes) and job payloads of at "
            f"most {self._max_payload_bytes} bytes (limits.max_payload_bytes)",
        )


class ServiceRegistrar:
    """Collects the method handlers that generated `add_*_to_server` functions register, so
    they can be guarded before they reach the real server."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, MethodHandler]] = {}
        self._generic: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        for handler in handlers:
            name = getattr(handler, "service_name", lambda: "?")()
            self._generic.append(str(name))

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, MethodHandler]
    ) -> None:
        self.services[service] = dict(handlers)

    def install(self, server: grpc.aio.Server, guard: CallGuard) -> list[str]:
        """Register every collected service on `server`, each method guarded; returns the
        full method paths served."""
        unregistered = sorted(set(self._generic) - set(self.services))
        if unregistered:  # a service we could not see method by method: refuse to serve it
            raise TypeError(f"cannot guard services {unregistered}: no method handlers")
        served: list[str] = []
        for service, handlers in self.services.items():
            guarded = {
                name: guard.wrap(f"/{service}/{name}", handler)
                for name, handler in handlers.items()
            }
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, guarded),)
            )
            server.add_registered_method_handlers(service, guarded)
            served.extend(f"/{service}/{name}" for name in handlers)
        return served
