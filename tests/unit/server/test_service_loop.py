"""ServiceLoop: runs at start, on wake and on the interval; survives errors; stops cleanly.

The loops under test use an hour-long interval, so anything that happens within a test was
caused by start(), wake() or the error path, never by the interval passing.
"""

from __future__ import annotations

import asyncio

import pytest
import structlog

from jobq.domain.errors import Unavailable
from jobq.server.service_loop import DOWN_AFTER_FAILURES, GIVE_UP_AFTER_BUGS, ServiceLoop

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
        assert not loop.running  # restarting only after the backoff (an hour here)
    assert [e["action"] for e in logs] == ["svc.crashed"]
    await loop.stop()


@pytest.mark.parametrize("problem", [_Fatal(), asyncio.CancelledError()])
async def test_a_crashed_loop_is_restarted_after_the_backoff(problem: BaseException) -> None:
    """Whatever ended the task, unless it was stop(): an escaped BaseException, or a
    CancelledError that came out of a call rather than from stop()."""
    runs = Runs()

    async def crashes_once() -> str:
        await runs()
        if runs.count == 1:
            raise problem
        return "done"

    loop = ServiceLoop("svc", HOUR, crashes_once, retry_s=0.01)
    with structlog.testing.capture_logs() as logs:
        loop.start()
        await runs.reach(2)
        assert loop.running
        assert loop.failures == 0  # the second run succeeded
        await loop.stop()
    actions = [e["action"] for e in logs]
    assert actions == ["svc.crashed", "svc.recovered"]


async def test_stop_cancels_a_pending_restart() -> None:
    runs = Runs()

    async def fatal() -> None:
        await runs()
        raise _Fatal

    loop = ServiceLoop("svc", HOUR, fatal)
    with structlog.testing.capture_logs():
        loop.start()
        await runs.reach(1)
        await _let_the_loop_spin()
        restart = loop._restart
        assert restart is not None  # due in an hour
        await loop.stop()
    assert restart.cancelled()
    assert not loop.running


async def test_failures_back_off_exponentially_up_to_the_cap() -> None:
    runs = Runs(fail_first=5)
    loop = ServiceLoop("svc", HOUR, runs, retry_s=0.001, max_retry_s=0.004)
    with structlog.testing.capture_logs() as logs:
        loop.start()
        try:
            await runs.reach(6)
        finally:
            await loop.stop()
    waits = [e["event"].rsplit(" ", 1)[1] for e in logs if e["action"] == "svc.error"]
    assert waits == ["0.001s", "0.002s", "0.004s", "0.004s", "0.004s"]
    assert [e["failures"] for e in logs if e["action"] == "svc.error"] == [1, 2, 3, 4, 5]


async def test_a_loop_that_keeps_failing_reports_itself_down_until_a_run_succeeds() -> None:
    seen: list[str | None] = []  # down_reason() as each run found it

    async def fails_then_works() -> None:
        seen.append(loop.down_reason())
        if len(seen) <= DOWN_AFTER_FAILURES:
            raise ConnectionRefusedError("database down")

    loop = ServiceLoop("svc", HOUR, fails_then_works, retry_s=0.001)
    assert loop.down_reason() is None  # never started: not a failing loop
    with structlog.testing.capture_logs() as logs:
        loop.start()
        try:
            async with asyncio.timeout(5):
                while len(seen) <= DOWN_AFTER_FAILURES:
                    await asyncio.sleep(0.001)
            await _let_the_loop_spin()
            assert loop.down_reason() is None  # the last run succeeded
        finally:
            await loop.stop()
    assert seen[:DOWN_AFTER_FAILURES] == [None] * DOWN_AFTER_FAILURES  # a blip is not down
    assert seen[DOWN_AFTER_FAILURES] == (
        f"svc down: {DOWN_AFTER_FAILURES} failures in a row, last ConnectionRefusedError"
    )
    assert logs[-1]["action"] == "svc.recovered"


@pytest.mark.parametrize("interval", [0, -1.0])
def test_a_non_positive_interval_is_refused(interval: float) -> None:
    async def nothing() -> None:
        return None

    with pytest.raises(ValueError, match="positive"):
        ServiceLoop("svc", interval, nothing)


class Waits:
    """A sleep that returns at once and remembers how long it was asked to wait: the backoff
    without the wall-clock time."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(0)


async def test_a_bug_that_keeps_failing_gives_up_and_says_so() -> None:
    runs, waits = Runs(fail_first=10**6), Waits()
    gave_up: list[tuple[str, BaseException]] = []
    loop = ServiceLoop("svc", HOUR, runs, retry_s=1.0, max_retry_s=5.0, sleep=waits)
    loop.on_give_up(lambda name, problem: gave_up.append((name, problem)))
    with structlog.testing.capture_logs() as logs:
        loop.start()
        await runs.reach(GIVE_UP_AFTER_BUGS)
        await _let_the_loop_spin()
    assert runs.count == GIVE_UP_AFTER_BUGS  # nothing more after giving up
    assert [name for name, _ in gave_up] == ["svc"]
    assert str(gave_up[0][1]) == f"boom {GIVE_UP_AFTER_BUGS}"
    assert waits.asked == [1.0, 2.0, 4.0] + [5.0] * (GIVE_UP_AFTER_BUGS - 4)
    assert not loop.running
    assert (
        loop.down_reason() == f"svc stopped: gave up after {GIVE_UP_AFTER_BUGS} failures in a row"
    )
    [line] = [e for e in logs if e["action"] == "svc.gave_up"]
    assert line["log_level"] == "error"
    await loop.stop()


async def test_a_database_outage_never_gives_up() -> None:
    calls = 0

    async def outage() -> None:
        nonlocal calls
        calls += 1
        raise Unavailable("cannot reach PostgreSQL")

    gave_up: list[str] = []
    loop = ServiceLoop("svc", HOUR, outage, retry_s=1.0, sleep=Waits())
    loop.on_give_up(lambda name, _: gave_up.append(name))
    loop.start()
    try:
        async with asyncio.timeout(5):
            while calls < 3 * GIVE_UP_AFTER_BUGS:
                await asyncio.sleep(0)
        assert gave_up == []
        assert loop.running
    finally:
        await loop.stop()


async def test_a_success_between_failures_starts_the_count_again() -> None:
    outcomes = iter([*[True] * (GIVE_UP_AFTER_BUGS - 1), False] * 3)
    done = asyncio.Event()

    async def flaky() -> None:
        failing = next(outcomes, None)
        if failing is None:
            done.set()
            return
        if failing:
            raise RuntimeError("flaky")

    gave_up: list[str] = []
    loop = ServiceLoop("svc", 0.001, flaky, retry_s=1.0, sleep=Waits())
    loop.on_give_up(lambda name, _: gave_up.append(name))
    loop.start()
    try:
        async with asyncio.timeout(5):
            await done.wait()
        assert gave_up == []
    finally:
        await loop.stop()
