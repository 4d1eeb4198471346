"""The overview page and the live feed on in-process jq-servers: the status cards, who may see
them, the cap on open streams, and another replica's work reaching this replica's streams
through the History sampler."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from support.auth import Tokens
from support.processes import free_port
from support.server_harness import running_server

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


def dashboard_of(app: ServerApp) -> Any:
    running = app._running
    assert running is not None
    assert running.dashboard is not None
    return running.dashboard


async def test_the_overview_shows_status_cards_to_a_reader_only(db_dsn: str) -> None:
    tokens = Tokens.new()
    settings = {"dashboard.port": free_port(), **tokens.settings()}
    async with running_server(db_dsn, settings) as (app, _):
        base = f"http://127.0.0.1:{app.dashboard_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as anonymous:
            answer = await anonymous.get("/")
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/login")
        async with logged_in(base, tokens.by_scope[Scope.READ]) as http:
            page = await http.get("/")
            assert page.status_code == 200
            for region in ('id="overview-jobs" data-live-region', 'id="overview-workers"'):
                assert region in page.text
            assert 'data-status="DEAD_LETTERED"' in page.text
            assert 'id="chart-throughput"' in page.text
            assert 'id="chart-depth"' in page.text
            assert "/static/vendor/uPlot.iife.min.js" in page.text
            assert "<script>" not in page.text
            assert "style=" not in page.text
            for asset in ("/static/vendor/uPlot.iife.min.js", "/static/live.js"):
                assert (await http.get(asset)).status_code == 200, asset
        async with logged_in(base, tokens.by_scope[Scope.SUBMIT]) as http:
            page = await http.get("/")
            assert page.status_code == 403
            assert "read scope" in page.text


async def test_streams_over_the_cap_get_503(db_dsn: str) -> None:
    async with running_server(db_dsn, {"dashboard.port": free_port()}) as (app, _):
        dashboard_of(app).ctx.live.max_streams = 1
        base = f"http://127.0.0.1:{app.dashboard_port}"
        async with (
            httpx.AsyncClient(base_url=base, timeout=10) as http,
            http.stream("GET", "/live/events") as first,
        ):
            assert first.status_code == 200
            await anext(first.aiter_lines())  # the stream has started: it holds the slot
            second = await http.get("/live/events")
            assert second.status_code == 503
            assert "live streams are open already" in second.text


async def test_another_replicas_work_reaches_this_replicas_stream(db_dsn: str) -> None:
    """Replica B commits the jobs: A's lifecycle stream never sees them, A's History sample
    does, and A's streams get a change event marked `elsewhere`."""
    async with (
        running_server(db_dsn, {"dashboard.port": free_port()}) as (a, _),
        running_server(db_dsn) as (_, b_client),
    ):
        history = dashboard_of(a).ctx.history
        await history.loop.stop()
        await history.loop.run_once()  # the baseline
        received: list[dict[str, Any]] = []
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{a.dashboard_port}", timeout=10) as h,
            h.stream("GET", "/live/events") as response,
        ):
            reader = asyncio.create_task(events_of(response, received))
            await asyncio.sleep(0.2)
            await b_client.jobs.SubmitJob(
                jpb.SubmitJobRequest(
                    queue_name="default", payload=json.dumps({"handler": "x:y"}).encode()
                ),
                timeout=10,
            )
            await asyncio.sleep(1.0)  # two ticks: nothing from A's own lifecycle stream
            assert received == []
            await history.loop.run_once()
            async with asyncio.timeout(5):
                while not received:
                    await asyncio.sleep(0.05)
            reader.cancel()
    assert received[0]["elsewhere"] is True
    assert received[0]["counts"] == {}


async def test_a_stream_whose_client_went_away_frees_its_slot(db_dsn: str) -> None:
    async with running_server(db_dsn, {"dashboard.port": free_port()}) as (app, _):
        live = dashboard_of(app).ctx.live
        base = f"http://127.0.0.1:{app.dashboard_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            async with http.stream("GET", "/live/events") as response:
                await anext(response.aiter_lines())
                assert live.streams == 1
            # The client closed its connection: the server notices (ASGI http.disconnect).
            async with asyncio.timeout(5):
                while live.streams:
                    await asyncio.sleep(0.05)
