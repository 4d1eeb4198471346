"""The health and metrics endpoints over a real socket: routes, errors and hostile clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobq.observability import http_endpoints
from jobq.observability.http_endpoints import (
    MAX_REQUEST_BYTES,
    HttpEndpoints,
    Response,
    Route,
    health_routes,
    metrics_routes,
)
from jobq.observability.metrics import ServerMetrics

DEADLINE_S = 10.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_reply(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(status), headers, body)


async def send_raw(port: int, data: bytes) -> bytes:
    """Send `data`, then read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(DEADLINE_S):
            return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


async def request(port: int, path: str, method: str = "GET") -> Reply:
    raw = await send_raw(port, f"{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return parse_reply(raw)


@asynccontextmanager
async def serving(routes: Mapping[str, Route], **kwargs: int) -> AsyncIterator[HttpEndpoints]:
    endpoints = HttpEndpoints("127.0.0.1", 0, routes, **kwargs)
    await endpoints.start()
    try:
        yield endpoints
    finally:
        await endpoints.stop()


async def until_connections(http: HttpEndpoints, count: int) -> None:
    """Wait (with a deadline) until the server is serving `count` connections."""
    async with asyncio.timeout(DEADLINE_S):
        while http.active_connections != count:
            await asyncio.sleep(0.005)


async def ready() -> tuple[bool, str]:
    return True, "ready"


async def test_healthz_answers_ok_and_closes_the_connection() -> None:
    async with serving(health_routes(ready)) as http:
        reply = await request(http.port, "/healthz")

    assert reply.status == 200
    assert reply.body.strip() == b"ok"
    assert reply.headers["connection"] == "close"
    assert reply.headers["content-type"].startswith("text/plain")
    assert int(reply.headers["content-length"]) == len(reply.body)


async def test_readyz_answers_200_when_the_check_passes() -> None:
    async with serving(health_routes(ready)) as http:
        reply = await request(http.port, "/readyz")

    assert (reply.status, reply.body.strip()) == (200, b"ready")


async def test_readyz_answers_503_with_the_reason_of_a_failing_check() -> None:
    async def not_ready() -> tuple[bool, str]:
        return False, "postgres unavailable:\nConnectionRefusedError"

    async with serving(health_routes(not_ready)) as http:
        reply = await request(http.port, "/readyz")
        live = await request(http.port, "/healthz")

    assert reply.status == 503
    assert reply.body == b"postgres unavailable: ConnectionRefusedError\n"  # one line
    assert live.status == 200  # liveness does not follow readiness


async def test_readyz_bounds_a_hanging_check_by_its_timeout() -> None:
    never = asyncio.Event()

    async def hangs() -> tuple[bool, str]:
        await never.wait()
        return True, "ready"

    async with serving(health_routes(hangs, timeout_s=0.1)) as http:
        reply = await request(http.port, "/readyz")

    assert (reply.status, reply.body.strip()) == (503, b"timeout")


async def test_readyz_turns_a_raising_check_into_503_without_its_message() -> None:
    async def raises() -> tuple[bool, str]:
        raise RuntimeError("secret detail")

    async with serving(health_routes(raises)) as http:
        reply = await request(http.port, "/readyz")

    assert reply.status == 503
    assert b"RuntimeError" in reply.body
    assert b"secret detail" not in reply.body


async def test_metrics_serves_the_exposition() -> None:
    metrics = ServerMetrics()
    metrics.jobs_submitted.labels(queue="default").inc(3)

    async with serving(metrics_routes(metrics.render)) as http:
        reply = await request(http.port, "/metrics")

    assert reply.status == 200
    assert reply.headers["content-type"] == metrics.render()[1]
    names = {f.name for f in text_string_to_metric_families(reply.body.decode())}
    assert "jq_jobs_submitted" in names
    assert b'jq_jobs_submitted_total{queue="default"} 3.0' in reply.body


async def test_head_sends_headers_but_no_body() -> None:
    metrics = ServerMetrics()
    async with serving({**metrics_routes(metrics.render), **health_routes(ready)}) as http:
        reply = await request(http.port, "/metrics", method="HEAD")
        health = await request(http.port, "/healthz", method="HEAD")

    assert reply.status == 200
    assert reply.body == b""
    assert int(reply.headers["content-length"]) > 0
    assert (health.status, health.body, health.headers["content-length"]) == (200, b"", "3")


async def test_unknown_paths_are_404_and_the_query_string_is_ignored() -> None:
    async with serving(health_routes(ready)) as http:
        missing = await request(http.port, "/nope")
        with_query = await request(http.port, "/healthz?verbose=1")

    assert missing.status == 404
    assert with_query.status == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
async def test_other_methods_are_405_with_an_allow_header(method: str) -> None:
    async with serving(health_routes(ready)) as http:
        reply = await request(http.port, "/healthz", method=method)

    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz\r\n\r\n",
        b"GET /healthz HTTP/2.0\r\n\r\n",
        b"GET healthz HTTP/1.1\r\n\r\n",
        b"G(T /healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /h\xe9althz HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x",  # closed before the head ends
    ],
)
async def test_malformed_requests_are_400(raw: bytes) -> None:
    async with serving(health_routes(ready)) as http:
        reader, writer = await asyncio.open_connection("127.0.0.1", http.port)
        writer.write(raw)
        writer.write_eof()
        async with asyncio.timeout(DEADLINE_S):
            reply = parse_reply(await reader.read())
        writer.close()
        await writer.wait_closed()

    assert reply.status == 400


async def test_an_oversized_request_is_refused() -> None:
    huge = b"GET /healthz HTTP/1.1\r\nX-Padding: " + b"a" * (MAX_REQUEST_BYTES * 2) + b"\r\n\r\n"
    async with serving(health_routes(ready)) as http:
        try:
            raw = await send_raw(http.port, huge)
        except ConnectionError:
            raw = b""  # closed on us while we were still sending: refused as well
        after = await request(http.port, "/healthz")

    assert raw == b"" or parse_reply(raw).status == 400
    assert after.status == 200  # and the server goes on serving


async def test_a_slow_client_gets_408_and_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_endpoints, "READ_TIMEOUT_S", 0.2)
    async with serving(health_routes(ready)) as http:
        reader, writer = await asyncio.open_connection("127.0.0.1", http.port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # and never the end of the head
        async with asyncio.timeout(DEADLINE_S):
            raw = await reader.read()
        writer.close()
        await writer.wait_closed()

    assert parse_reply(raw).status == 408


async def test_a_failing_route_is_500_without_its_exception_text() -> None:
    async def broken() -> Response:
        raise ValueError("internal secret")

    async with serving({"/broken": broken}) as http:
        reply = await request(http.port, "/broken")

    assert reply.status == 500
    assert b"internal secret" not in reply.body


async def test_connections_beyond_the_limit_are_closed_at_once() -> None:
    async with serving(health_routes(ready), max_connections=1) as http:
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", http.port)
        await until_connections(http, 1)
        try:
            raw = await send_raw(http.port, b"GET /healthz HTTP/1.1\r\n\r\n")
        except ConnectionError:
            raw = b""  # reset rather than closed: refused all the same
        idle_writer.close()
        await idle_writer.wait_closed()
        del idle_reader

    assert raw == b""


async def test_port_zero_binds_an_ephemeral_port_and_stop_releases_it() -> None:
    http = HttpEndpoints("127.0.0.1", 0, health_routes(ready))
    with pytest.raises(RuntimeError):
        _ = http.port
    await http.start()
    await http.start()  # idempotent
    port = http.port
    assert port > 0
    assert (await request(port, "/healthz")).status == 200

    # A client that never finishes its request must not hold up stop().
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    await until_connections(http, 1)
    async with asyncio.timeout(DEADLINE_S):
        await http.stop()
    await http.stop()  # idempotent
    writer.close()

    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
