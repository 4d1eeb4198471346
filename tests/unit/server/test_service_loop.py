"""ServiceLoop: runs at start, on wake and on the interval; survives errors; stops cleanly.

The loops under test use an hour-long interval, so anything that happens within a test was
caused by start(), wake() or the error path, never by the interval passing.
"""

from __future__ import annotations

import asyncio

import pytest
import structlog

from jobq.server.service_loop import ServiceLoop

HOUR = 3600.0


class Runs:
    """A run_once that counts its calls and lets the test wait for the n-th one."""

    def __init__(self, fail_first: int = 0) -> None:
        self.count = 0
        self.fail_first = fail_first
        self._changed = asyncio.Condition()

    async def __call__(self) -> str:
        self.count += 1
        async with self._changed:
            self._changed.notify_all()
        if self.count <= self.fail_first:
            raise RuntimeError(f"boom {self.count}")
        return "done"

    async def reach(self, n: int) -> None:
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(lambda: self.count >= n)


async def _let_the_loop_spin() -> None:
    """Give the loop's task plenty of turns without letting any time pass."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_run_once_is_callable_directly_without_starting() -> None:
    runs = Runs()
    loop = ServiceLoop("svc", HOUR, runs)
    assert await loop.run_once() == "done"
    assert runs.count == 1
    assert not loop.running


async def test_start_runs_at_once_and_wake_runs_early() -> None:
    runs = Runs()
    loop = ServiceLoop("svc", HOUR, runs)
    loop.start()
    try:
        await runs.reach(1)
        await _let_the_loop_spin()
        assert runs.count == 1  # now it waits for the interval
        loop.wake()
        await runs.reach(2)
        await _let_the_loop_spin()
        assert runs.count == 2
    finally:
        await loop.stop()


async def test_the_interval_runs_it_again() -> None:
    runs = Runs()
    loop = ServiceLoop("svc", 0.01, runs)
    loop.start()
    try:
        await runs.reach(3)
    finally:
        await loop.stop()


async def test_an_error_is_logged_and_the_loop_goes_on_after_the_interval() -> None:
    runs = Runs(fail_first=2)
    loop = ServiceLoop("svc", 0.01, runs)
    with structlog.testing.capture_logs() as logs:
        loop.start()
        try:
            await runs.reach(3)
            assert loop.running
        finally:
            await loop.stop()
    errors = [e for e in logs if e.get("action") == "svc.error"]
    assert len(errors) == 2
    assert errors[0]["log_level"] == "error"
    assert errors[0]["exc_info"] is True


async def test_after_an_error_wake_does_not_cut_the_wait_short() -> None:
    runs = Runs(fail_first=1)
    loop = ServiceLoop("svc", HOUR, runs)
    with structlog.testing.capture_logs():
        loop.start()
        try:
            await runs.reach(1)
            for _ in range(5):
                loop.wake()
                await _let_the_loop_spin()
            assert runs.count == 1  # no tight error loop, however often it is woken
        finally:
            await loop.stop()


async def test_start_and_stop_are_idempotent_and_it_can_restart() -> None:
    runs = Runs()
    loop = ServiceLoop("svc", HOUR, runs)
    await loop.stop()  # never started
    loop.start()
    loop.start()  # already running: no second task
    await runs.reach(1)
    await _let_the_loop_spin()
    assert runs.count == 1
    await loop.stop()
    await loop.stop()
    assert not loop.running
    loop.start()
    try:
        await runs.reach(2)
    finally:
        await loop.stop()


async def test_stop_cancels_a_run_in_progress_and_waits_for_it() -> None:
    entered, cancelled = asyncio.Event(), asyncio.Event()

    async def hangs() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    loop = ServiceLoop("svc", HOUR, hangs)
    loop.start()
    async with asyncio.timeout(5):
        await entered.wait()
    await loop.stop()
    assert cancelled.is_set()
    assert not loop.running


class _Fatal(BaseException):
    """Something the loop does not catch (it only handles Exception)."""


async def test_an_unexpected_exit_is_logged_not_silent() -> None:
    async def fatal() -> None:
        raise _Fatal

    loop = ServiceLoop("svc", HOUR, fatal)
    with structlog.testing.capture_logs() as logs:
        loop.start()
        await _let_the_loop_spin()
        assert not loop.running
    assert [e["action"] for e in logs] == ["svc.crashed"]
    await loop.stop()


@pytest.mark.parametrize("interval", [0, -1.0])
def test_a_non_positive_interval_is_refused(interval: float) -> None:
    async def nothing() -> None:
        return None

    with pytest.raises(ValueError, match="positive"):
        ServiceLoop("svc", interval, nothing)
