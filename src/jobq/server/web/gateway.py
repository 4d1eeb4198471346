"""The HTTP side's way into the gRPC services: call a method in-process, as a given caller.

The dashboard and /api/v1 do not reimplement any RPC. They build the method's request message,
and the gateway checks the caller's scope (the table every gRPC call is checked against,
`rpc/method_scopes.py`), records the caller for the audit trail, and runs the servicer's own
method: the same validation, the same errors, the same audit, the same metrics. The servicer
sees a stand-in for grpc's ServicerContext that turns `abort` into a `GatewayError` carrying
the status code and message the gRPC client would have seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message

from jobq.domain.errors import JobqError
from jobq.observability.correlation import CORRELATION_ID_METADATA_KEY
from jobq.rpc.method_scopes import METHOD_SCOPES
from jobq.rpc.status_codes import status_for
from jobq.server.authentication import Authenticator
from jobq.server.caller import Caller, set_caller
from jobq.server.guard import MethodHandler

__all__ = ["HTTP_STATUS", "Gateway", "GatewayError"]

HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    # The request is well formed but the job or queue is not in a state that allows it (retry
    # a DONE job, delete a queue with jobs): a conflict with the current state.
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
"""gRPC status → HTTP status (Google's API mapping, but FAILED_PRECONDITION is 409); a code
not listed is 500."""

DEFAULT_TIMEOUT_S = 10.0


class GatewayError(Exception):
    """A call that did not succeed: the gRPC status it ended with and its message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


class Gateway:
    """Runs unary RPCs of the served services for HTTP callers."""

    def __init__(self, handlers: Mapping[str, MethodHandler], authenticator: Authenticator) -> None:
        """`handlers`: method path (`/jobq.v1.JobService/SubmitJob`) → its unguarded handler."""
        self._handlers = {
            path: handler
            for path, handler in handlers.items()
            if handler.unary_unary is not None and path in METHOD_SCOPES
        }
        self._authenticator = authenticator

    @property
    def authentication(self) -> bool:
        """False: no tokens configured, every caller is ANONYMOUS (loopback only)."""
        return self._authenticator.enabled

    def methods(self) -> Sequence[str]:
        """The method paths callable through the gateway (every unary RPC with a scope)."""
        return sorted(self._handlers)

    def request_class(self, method: str) -> type[Message]:
        """The request message class of `method` (KeyError for an unknown method)."""
        deserializer = self._handlers[method].request_deserializer
        cls = getattr(deserializer, "__self__", None)
        if not (isinstance(cls, type) and issubclass(cls, Message)):
            raise TypeError(f"{method}: no request message class")
        return cls

    def authorized(self, caller: Caller, method: str) -> bool:
        """Whether `caller` holds the scope `method` needs (pages hide what it may not do)."""
        return METHOD_SCOPES[method] in caller.scopes

    async def call(
        self,
        method: str,
        request: Message,
        caller: Caller,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        correlation_id: str | None = None,
    ) -> Any:
        """The response of `method` for `request`, called as `caller`. Raises GatewayError
        (PERMISSION_DENIED without the scope; whatever the servicer answered otherwise)."""
        handler = self._handlers.get(method)
        if handler is None:
            raise GatewayError(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not served over HTTP")
        try:
            self._authenticator.authorize(caller, METHOD_SCOPES[method], method)
        except JobqError as exc:
            code, message = status_for(exc)
            raise GatewayError(code, message) from None
        set_caller(caller)  # this request's task: the audit trail names the caller
        context = _Context(timeout_s, correlation_id)
        try:
            return await handler.unary_unary(request, context)
        except grpc.aio.AbortError:
            raise GatewayError(context.status, context.details) from None


class _Context:
    """What the servicers use of grpc.aio.ServicerContext, for an in-process call."""

    def __init__(self, timeout_s: float, correlation_id: str | None) -> None:
        self._timeout_s = timeout_s
        self._metadata: tuple[tuple[str, str], ...] = (
            ((CORRELATION_ID_METADATA_KEY, correlation_id),) if correlation_id else ()
        )
        self.status = grpc.StatusCode.UNKNOWN
        self.details = "unknown error"
        self.trailing: tuple[tuple[str, str], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    def time_remaining(self) -> float:
        return self._timeout_s

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.trailing = metadata

    def code(self) -> grpc.StatusCode:
        return self.status

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        self.status, self.details = code, details
        raise grpc.aio.AbortError()
