"""What every RPC does around its business: correlation id, deadline, error mapping, metrics.

Servicer methods stay thin (parse, call, convert) and are wrapped with `@rpc("Service")`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc

from jobq.domain.errors import JobqError
from jobq.observability.correlation import CORRELATION_ID_METADATA_KEY, correlation_scope
from jobq.observability.logging_setup import get_logger
from jobq.rpc.status_codes import is_database_outage, status_for

__all__ = ["RpcObserver", "log_failure", "rpc"]

log = get_logger("jobq.rpc")

# Leave the client this much of its deadline to receive our UNAVAILABLE instead of timing out.
_DEADLINE_MARGIN_S = 0.05


class RpcObserver(Protocol):
    """Receives one call per finished RPC (metrics) and per database outage seen."""

    def rpc_finished(self, service: str, method: str, code: str, seconds: float) -> None: ...
    def database_error(self) -> None: ...


class HasObserver(Protocol):
    observer: RpcObserver


S = TypeVar("S", bound=HasObserver)
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[S, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]


def rpc(service: str) -> Callable[[Handler[S, Req, Resp]], Handler[S, Req, Resp]]:
    """Wrap a servicer method: run it in a correlation scope and within the caller's deadline,
    turn errors into status codes with human messages, and report the outcome."""

    def decorate(fn: Handler[S, Req, Resp]) -> Handler[S, Req, Resp]:
        method = fn.__name__

        @functools.wraps(fn)
        async def wrapper(
            self: S, request: Req, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Resp:
            metadata = dict(context.invocation_metadata() or ())
            incoming = metadata.get(CORRELATION_ID_METADATA_KEY)
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            with correlation_scope(incoming if isinstance(incoming, str) else None) as cid:
                context.set_trailing_metadata(((CORRELATION_ID_METADATA_KEY, cid),))
                try:
                    remaining = context.time_remaining()
                    if remaining is None:
                        return await fn(self, request, context)
                    budget = max(remaining - _DEADLINE_MARGIN_S, 0.001)
                    async with asyncio.timeout(budget):
                        return await fn(self, request, context)
                except asyncio.CancelledError:
                    code = grpc.StatusCode.CANCELLED
                    raise
                except Exception as exc:
                    if _is_abort(exc):
                        code = context.code() or grpc.StatusCode.UNKNOWN
                        raise
                    code, message = status_for(exc)
                    log_failure(service, method, code, exc)
                    if is_database_outage(exc):
                        self.observer.database_error()
                    await context.abort(code, message)
                    raise  # unreachable: abort raises
                finally:
                    self.observer.rpc_finished(
                        service, method, code.name, time.perf_counter() - started
                    )

        return wrapper

    return decorate


def _is_abort(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AbortError)


def log_failure(service: str, method: str, code: grpc.StatusCode, exc: BaseException) -> None:
    fields = {"action": "rpc.failed", "rpc": f"{service}/{method}", "code": code.name}
    if isinstance(exc, JobqError):
        log.info(str(exc), **fields)
    elif code is grpc.StatusCode.UNAVAILABLE:
        log.warning("database unavailable", error=str(exc)[:200] or type(exc).__name__, **fields)
    else:
        log.exception("unexpected error", **fields)
