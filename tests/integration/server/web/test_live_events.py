"""GET /live/events and GET /live/history on an in-process jq-server: the login they need, a
`change` event after a submit through the gRPC API, the coalesced rate while jobs pour in,
streams that end when the server stops, and the history's counts of finished jobs."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from support.auth import Tokens, bearer
from support.payloads import job_payload
from support.processes import free_port
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, running_server

from jobq.domain.scopes import Scope
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.server.app import ServerApp


@asynccontextmanager
async def logged_in(base: str, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client holding a dashboard session of `token` (through the login form)."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        page = await http.get("/login")
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found, page.text
        answer = await http.post(
            "/login", data={"csrf_token": found.group(1), "token": token, "next": "/"}
        )
        assert answer.status_code == 303, answer.text
        yield http


@pytest.fixture
def tokens() -> Tokens:
    return Tokens.new()


@pytest.fixture
async def server(db_dsn: str, tokens: Tokens) -> AsyncIterator[tuple[ServerApp, Client, str]]:
    settings = {"dashboard.port": free_port(), **tokens.settings()}
    async with running_server(db_dsn, settings) as (app, client):
        yield app, client, f"http://127.0.0.1:{app.dashboard_port}"


async def submit(client: Client, tokens: Tokens | None, count: int = 1) -> list[str]:
    reply = await client.jobs.SubmitJobs(
        jpb.SubmitJobsRequest(
            jobs=[jpb.SubmitJobRequest(queue_name="default", payload=job_payload())] * count
        ),
        metadata=bearer(tokens.everything) if tokens else None,
        timeout=10,
    )
    return list(reply.job_ids)


async def events_of(response: httpx.Response, into: list[dict[str, Any]]) -> None:
    """Append every `change` event's data of an open SSE response to `into`."""
    kind = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind == "change":
            into.append(json.loads(line[6:]))
        elif line == "":
            kind = ""


async def test_the_stream_needs_a_login_with_read_scope(
    server: tuple[ServerApp, Client, str], tokens: Tokens
) -> None:
    _, _, base = server
    async with httpx.AsyncClient(base_url=base, timeout=5) as anonymous:
        for path in ("/live/events", "/live/history"):
            answer = await anonymous.get(path)
            assert answer.status_code == 401, path
            assert "log in" in answer.text
    # A token without the read scope (submit only) may log in but not watch.
    async with logged_in(base, tokens.by_scope[Scope.SUBMIT]) as http:
        assert (await http.get("/live/history")).status_code == 403


async def test_a_submit_through_grpc_arrives_as_a_change_event(
    server: tuple[ServerApp, Client, str], tokens: Tokens
) -> None:
    _, client, base = server
    received: list[dict[str, Any]] = []
    async with (
        logged_in(base, tokens.everything) as http,
        http.stream("GET", "/live/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-accel-buffering"] == "no"
        reader = asyncio.create_task(events_of(response, received))
        await asyncio.sleep(0.2)  # the stream is open before the submit
        await submit(client, tokens)
        async with asyncio.timeout(10):
            while not any(e["counts"].get("submitted") for e in received):
                await asyncio.sleep(0.05)
        reader.cancel()
    assert received[0]["queues"] == ["default"]


async def test_jobs_pouring_in_arrive_as_at_most_two_events_a_second(
    server: tuple[ServerApp, Client, str], tokens: Tokens
) -> None:
    _, client, base = server
    received: list[dict[str, Any]] = []
    submitted = 0
    async with (
        logged_in(base, tokens.everything) as http,
        http.stream("GET", "/live/events") as response,
    ):
        reader = asyncio.create_task(events_of(response, received))
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < 3.0:
            submitted += len(await submit(client, tokens, 20))
        await asyncio.sleep(0.6)  # the last tick
        seconds = loop.time() - start
        reader.cancel()
    assert submitted > 100
    assert 2 <= len(received) <= 2 * seconds + 2, (len(received), seconds)
    assert sum(e["counts"].get("submitted", 0) for e in received) == submitted


async def test_open_streams_end_when_the_server_stops(db_dsn: str) -> None:
    async with running_server(db_dsn, {"dashboard.port": free_port()}) as (app, _):
        base = f"http://127.0.0.1:{app.dashboard_port}"
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as http,
            http.stream("GET", "/live/events") as response,
        ):
            assert response.status_code == 200
            lines = response.aiter_lines()
            assert await anext(lines) == "retry: 3000"
            loop = asyncio.get_running_loop()
            stopping = loop.time()
            stop = asyncio.create_task(app.stop())
            async with asyncio.timeout(5):
                async for _ in lines:
                    pass
            ended = loop.time() - stopping
            await stop
    assert ended < 2.0, ended


async def test_history_counts_the_jobs_every_replica_finished(db_dsn: str) -> None:
    async with running_server(db_dsn, {"dashboard.port": free_port()}) as (app, client):
        running = app._running
        assert running is not None
        assert running.dashboard is not None
        history = running.dashboard.ctx.history
        await history.loop.stop()  # the test samples by itself, when it wants to
        await history.loop.run_once()  # a baseline: later samples count from here
        worker = await ProtocolWorker(client, concurrency=10).start()
        try:
            await submit(client, None, 10)
            assignments = await worker.take(10, within=10)
            await worker.run(assignments)
        finally:
            await worker.close()
        await submit(client, None, 3)  # left pending
        await history.loop.run_once()
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(f"http://127.0.0.1:{app.dashboard_port}/live/history")
    assert answer.status_code == 200
    body = answer.json()
    last = dict(zip(body["columns"], body["points"][-1], strict=True))
    assert last["finished_per_s"] > 0
    assert last["started_per_s"] > 0
    assert last["failed_per_s"] == 0
    assert last["pending"] == 3
