"""The small HTTP endpoints of jq-server and jq-worker: /healthz, /readyz and /metrics.

Probes and Prometheus need GET on three fixed paths, so this is a deliberately tiny HTTP/1.1
server on `asyncio.start_server` rather than a web framework: no new dependency, and it runs on
the program's own event loop beside gRPC.

Each connection serves one request and is closed (`Connection: close`), which removes keep-alive
and pipelining from the protocol surface. A request head larger than `MAX_REQUEST_BYTES` is
answered 400, and a client that has not sent a whole head within `READ_TIMEOUT_S` is answered
408 and dropped, so a slow or hostile client cannot hold a connection (or memory) for long.
Request bodies are never read: every route is a GET.
"""

from __future__ import annotations

import asyncio
import errno
import re
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus

from jobq.domain.errors import ListenError
from jobq.observability.logging_setup import get_logger

__all__ = [
    "MAX_REQUEST_BYTES",
    "READY_CHECK_TIMEOUT_S",
    "READ_TIMEOUT_S",
    "TEXT_PLAIN",
    "HttpEndpoints",
    "Response",
    "Route",
    "health_routes",
    "metrics_routes",
]

log = get_logger("jobq.http")

Response = tuple[int, bytes, str]
"""What a route answers: (status code, body, content type)."""

Route = Callable[[], Awaitable[Response]]
"""A route handler; routes take no arguments because every endpoint is a plain GET."""

MAX_REQUEST_BYTES = 8 * 1024
"""Largest request head (request line and headers) accepted."""

READ_TIMEOUT_S = 5.0
"""Seconds a client has to send its whole request head."""

WRITE_TIMEOUT_S = 5.0
"""Seconds a client has to take the response before the connection is dropped."""

READY_CHECK_TIMEOUT_S = 2.0
"""Seconds /readyz waits for the readiness check; a probe must get an answer, not hang."""

MAX_CONNECTIONS = 64
"""Connections served at once; more are closed straight away so they cannot pile up."""

TEXT_PLAIN = "text/plain; charset=utf-8"

_ALLOWED_METHODS = ("GET", "HEAD")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: a valid method name
_MAX_REASON_CHARS = 200


class _BadRequest(Exception):
    """The request head cannot be parsed; answered 400 with this message."""


class HttpEndpoints:
    """An HTTP/1.1 listener on `host:port` serving `routes` (path → handler).

    Port 0 binds an ephemeral port; `port` tells which one after `start()`. `start()` and
    `stop()` are idempotent. A handler that raises is answered 500 and logged; its exception
    text never reaches the client.
    """

    def __init__(
        self,
        host: str,
        port: int,
        routes: Mapping[str, Route],
        *,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._routes = dict(routes)
        self._max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound TCP port (of the first socket when the host resolves to several)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("HttpEndpoints is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def active_connections(self) -> int:
        """Connections being served now."""
        return len(self._connections)

    async def start(self) -> None:
        """Bind and start accepting connections."""
        if self._server is not None:
            return
        try:
            self._server = await asyncio.start_server(
                self._on_connection, self._host, self._requested_port, limit=MAX_REQUEST_BYTES
            )
        except OSError as exc:  # one clear line at start-up, not a traceback
            reason = "address in use" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
            raise ListenError(
                f"cannot listen on {self._host}:{self._requested_port}: {reason}"
            ) from None
        log.debug(
            "http endpoints listening",
            action="http.started",
            port=self.port,
            paths=sorted(self._routes),
        )

    async def stop(self) -> None:
        """Stop accepting, abort the connections still being served, release the port."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    # --- one connection ------------------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self._max_connections:
            writer.transport.abort()
            return
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
            writer.close()
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await writer.wait_closed()
        except (ConnectionError, TimeoutError):
            pass  # the client went away or would not take the response: nothing to tell it
        except asyncio.CancelledError:
            # stop() cancels connections in flight. The task ends normally rather than as
            # cancelled: Python 3.11's stream callback calls task.exception() on it and would
            # log the CancelledError as an error.
            pass
        finally:
            self._connections.discard(task)
            writer.transport.abort()  # a no-op after a clean close; frees the socket otherwise

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = "GET"
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            method, path = _parse_head(head)
        except TimeoutError:
            response: Response = _text(HTTPStatus.REQUEST_TIMEOUT, "request timeout")
        except asyncio.LimitOverrunError:
            response = _text(HTTPStatus.BAD_REQUEST, "request too large")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return  # connected and closed without a word (a TCP probe): nothing to answer
            response = _text(HTTPStatus.BAD_REQUEST, "incomplete request")
        except _BadRequest as exc:
            response = _text(HTTPStatus.BAD_REQUEST, str(exc))
        else:
            response = await self._dispatch(method, path)
        await self._respond(writer, response, head_only=method == "HEAD")

    async def _dispatch(self, method: str, path: str) -> Response:
        route = self._routes.get(path)
        if route is None:
            return _text(HTTPStatus.NOT_FOUND, "not found")
        if method not in _ALLOWED_METHODS:
            return _text(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed")
        try:
            return await route()
        except Exception as exc:
            log.error(
                "http route failed",
                action="http.error",
                path=path,
                error=f"{type(exc).__name__}: {exc}"[:_MAX_REASON_CHARS],
            )
            return _text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    async def _respond(
        self, writer: asyncio.StreamWriter, response: Response, *, head_only: bool
    ) -> None:
        status, body, content_type = response
        headers = [
            f"HTTP/1.1 {status} {_reason_phrase(status)}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Cache-Control: no-store",
            "Connection: close",
        ]
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            headers.append("Allow: " + ", ".join(_ALLOWED_METHODS))
        writer.write(("\r\n".join(headers) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            writer.write(body)
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()


def _parse_head(head: bytes) -> tuple[str, str]:
    """The method and path of a request head; raises `_BadRequest` when it is malformed."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise _BadRequest("request head is not ASCII") from None
    request_line, *header_lines = text[: -len("\r\n\r\n")].split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise _BadRequest("malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise _BadRequest("malformed method")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise _BadRequest("unsupported HTTP version")
    if not target.startswith("/"):
        raise _BadRequest("request target must be a path")
    for line in header_lines:
        name, sep, _ = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise _BadRequest("malformed header line")
    path = target.split("?", 1)[0].split("#", 1)[0]
    return method, path


def _reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _text(status: int, message: str) -> Response:
    return int(status), (message + "\n").encode(), TEXT_PLAIN


def _one_line(text: str) -> str:
    """A check's reason as one short line: it may come from an exception and goes to a probe."""
    return " ".join(text.split())[:_MAX_REASON_CHARS] or "not ready"


def health_routes(
    ready_check: Callable[[], Awaitable[tuple[bool, str]]],
    *,
    timeout_s: float = READY_CHECK_TIMEOUT_S,
) -> dict[str, Route]:
    """/healthz and /readyz.

    /healthz is liveness: 200 "ok" whenever the process can answer at all, so an orchestrator
    restarts only a wedged process, never one whose database is merely down. /readyz is
    readiness: 200 "ready" when `ready_check` says (True, …), with the reason when it starts
    with "ready" (a note such as "ready; kafka degraded: ..."); otherwise 503 with its reason.
    The check is bounded by `timeout_s` (503 "timeout"), and a check that raises is a 503
    naming only the exception type.
    """

    async def healthz() -> Response:
        return 200, b"ok\n", TEXT_PLAIN

    async def readyz() -> Response:
        try:
            async with asyncio.timeout(timeout_s):
                ready, reason = await ready_check()
        except TimeoutError:
            return _text(HTTPStatus.SERVICE_UNAVAILABLE, "timeout")
        except Exception as exc:
            return _text(HTTPStatus.SERVICE_UNAVAILABLE, f"check failed: {type(exc).__name__}")
        if ready:
            # "ready", or "ready; kafka degraded: ..." (a note that does not make it unready)
            return _text(
                HTTPStatus.OK, _one_line(reason) if reason.startswith("ready") else "ready"
            )
        return _text(HTTPStatus.SERVICE_UNAVAILABLE, _one_line(reason))

    return {"/healthz": healthz, "/readyz": readyz}


def metrics_routes(render: Callable[[], tuple[bytes, str]]) -> dict[str, Route]:
    """/metrics, serving whatever `render` returns (body, content type), e.g.
    `ServerMetrics.render`. Rendering is synchronous and fast, so it runs on the loop."""

    async def metrics() -> Response:
        body, content_type = render()
        return 200, body, content_type

    return {"/metrics": metrics}
