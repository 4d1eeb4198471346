"""Every background loop of jq-server runs supervised: a failing run is logged and run again
after the loop's backoff, and a loop that keeps failing makes /readyz answer 503 naming it, until
one of its runs succeeds again. The failure is injected by patching the loop's run."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

import pytest
import structlog
from support.processes import free_port
from support.server_harness import running_server

from jobq.server import service_loop
from jobq.server.dispatcher import Dispatcher
from jobq.server.heartbeat_monitor import HeartbeatMonitor
from jobq.server.notifier import Notifier
from jobq.server.reaper import Reaper
from jobq.server.schedule_runner import ScheduleRunner
from jobq.server.service_loop import DOWN_AFTER_FAILURES

FAST = {
    "scheduler.interval_ms": 50,
    "scheduler.heartbeat_check_interval_s": 0.05,
    "scheduler.assignment_timeout_s": 3,  # the reaper's interval: 1 s
}
DEADLINE_S = 20.0


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def _readyz_until(port: int, status: int, within: float = DEADLINE_S) -> str:
    """Poll /readyz until it answers `status`; its body."""
    async with asyncio.timeout(within):
        while True:
            got, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz")
            if got == status:
                return body
            await asyncio.sleep(0.05)  # the polling period, not a wait for time to pass


@pytest.mark.parametrize(
    ("service", "method", "name"),
    [
        (Dispatcher, "run_once", "dispatcher"),
        (Notifier, "run_once", "notifier"),
        (HeartbeatMonitor, "_tick", "heartbeat_monitor"),
        (Reaper, "run_once", "reaper"),
        (ScheduleRunner, "_tick", "schedules"),
    ],
)
async def test_a_loop_that_keeps_failing_is_reported_down_and_comes_back(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch, service: type, method: str, name: str
) -> None:
    original = getattr(service, method)
    broken = True
    calls = 0

    async def injected(self: Any) -> Any:
        nonlocal calls
        calls += 1
        if broken:
            raise RuntimeError("injected failure")
        return await original(self)

    # Before the server is built: some loops bind their run when they are constructed.
    monkeypatch.setattr(service, method, injected)
    with structlog.testing.capture_logs() as logs:
        async with running_server(db_dsn, {**FAST, "health.port": free_port()}) as (app, _):
            assert app.health_port is not None
            body = await _readyz_until(app.health_port, 503)
            assert f"{name} down: " in body
            assert "RuntimeError" in body
            assert calls >= DOWN_AFTER_FAILURES  # run again after each failure, not given up
            broken = False
            assert (await _readyz_until(app.health_port, 200)).strip() == "ready"
    errors = [e for e in logs if e.get("action") == f"{name}.error"]
    assert len(errors) >= DOWN_AFTER_FAILURES
    assert errors[0]["exc_info"] is True  # the traceback of the injected failure
    assert any(e.get("action") == f"{name}.recovered" for e in logs)


async def test_a_loop_that_restarting_cannot_fix_stops_the_server_with_a_clear_error(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (not a database outage) failing every run: after GIVE_UP_AFTER_BUGS of them the
    loop gives up, /readyz says so, and the server stops itself; run_server then raises
    ServiceFailed naming the loop, which jq-server turns into exit status 1."""

    async def injected(self: Any) -> Any:
        raise RuntimeError("injected bug")

    monkeypatch.setattr(service_loop, "GIVE_UP_AFTER_BUGS", DOWN_AFTER_FAILURES + 1)
    monkeypatch.setattr(Dispatcher, "run_once", injected)
    with structlog.testing.capture_logs() as logs:
        async with running_server(db_dsn, {**FAST, "health.port": free_port()}) as (app, _):
            assert app.health_port is not None
            async with asyncio.timeout(DEADLINE_S):
                await app.wait()  # the server asked itself to stop
            _, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{app.health_port}/readyz")
            assert "dispatcher stopped: gave up" in body
    assert app.failure is not None
    assert "the dispatcher loop kept failing (RuntimeError: injected bug)" in app.failure
    assert [e["action"] for e in logs].count("dispatcher.gave_up") == 1
