"""The loop watchdog's decisions on a fake clock: a loop blocked past its limit is reported
once, with how long it had stalled; a responsive loop, a limit of 0 and a pause of the whole
process report nothing; the limit is read at every check. Its thread: a stopped watchdog
reports nothing, and `keep_running` raises what killed the thread so the supervisor restarts
it. And in a child process, as a worker runs it: a SIGSTOP longer than the limit is a pause,
not a stall; a blocked loop ends the process, by default with EXIT_LOOP_BLOCKED and one JSON
line on stderr."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from jobq.worker.loop_watchdog import EXIT_LOOP_BLOCKED, LoopWatchdog

TICK_S = 0.05


class Stalls:
    """Records `on_stall` calls (made from the watchdog's thread)."""

    def __init__(self) -> None:
        self.seen: list[float] = []
        self.called = threading.Event()

    def __call__(self, stalled_s: float) -> None:
        self.seen.append(stalled_s)
        self.called.set()


def block(seconds: float) -> None:
    """What a misbehaving `async def` handler does: block the thread running the loop."""
    time.sleep(seconds)


async def watching(limit_s: Callable[[], float], stalls: Stalls) -> LoopWatchdog:
    watchdog = LoopWatchdog(limit_s, stalls, tick_s=TICK_S)
    watchdog.start(asyncio.get_running_loop())
    await asyncio.sleep(2 * TICK_S)  # a tick or two first
    return watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def unstarted(limit_s: Callable[[], float], stalls: Stalls) -> tuple[LoopWatchdog, Clock]:
    """A watchdog driven by hand: `tick()` is the loop's timer, `observe(now)` the thread."""
    clock = Clock()
    return LoopWatchdog(limit_s, stalls, tick_s=TICK_S, clock=clock), clock


def wake(watchdog: LoopWatchdog, clock: Clock, *, for_s: float, loop_ticks: bool) -> None:
    """Let `for_s` seconds pass in thread wakes of TICK_S, the loop ticking or blocked."""
    for _ in range(round(for_s / TICK_S)):
        clock.now += TICK_S
        if loop_ticks:
            watchdog.tick()
        watchdog.observe(clock.now)


def test_a_blocked_loop_is_reported_once_with_how_long_it_stalled() -> None:
    stalls = Stalls()
    watchdog, clock = unstarted(lambda: 0.3, stalls)
    wake(watchdog, clock, for_s=0.5, loop_ticks=True)
    wake(watchdog, clock, for_s=1.0, loop_ticks=False)  # blocked for three limits and more
    assert stalls.seen == [pytest.approx(0.35)]  # once, at the first wake past the limit
    wake(watchdog, clock, for_s=0.5, loop_ticks=True)
    wake(watchdog, clock, for_s=0.5, loop_ticks=False)  # a new stall is reported again
    assert len(stalls.seen) == 2


def test_a_responsive_loop_is_not_reported() -> None:
    stalls = Stalls()
    watchdog, clock = unstarted(lambda: 0.3, stalls)
    for _ in range(30):
        wake(watchdog, clock, for_s=0.25, loop_ticks=False)  # busy, but never for long
        wake(watchdog, clock, for_s=TICK_S, loop_ticks=True)
    assert stalls.seen == []


def test_a_limit_of_zero_turns_the_check_off_and_the_limit_is_read_at_every_check() -> None:
    stalls = Stalls()
    limit = [0.0]  # as before the worker registers, where the runtime may say "none yet"
    watchdog, clock = unstarted(lambda: limit[0], stalls)
    wake(watchdog, clock, for_s=0.8, loop_ticks=False)
    assert stalls.seen == []
    limit[0] = 0.3
    wake(watchdog, clock, for_s=TICK_S, loop_ticks=False)
    assert stalls.seen == [pytest.approx(0.85)]


def test_a_wake_that_overslept_is_a_pause_of_the_process_not_a_stall() -> None:
    stalls = Stalls()
    watchdog, clock = unstarted(lambda: 0.3, stalls)
    wake(watchdog, clock, for_s=0.2, loop_ticks=True)
    clock.now += 3.0  # SIGSTOP: neither the loop nor the thread ran
    watchdog.observe(clock.now)
    wake(watchdog, clock, for_s=0.25, loop_ticks=False)  # the limit counts from the resume
    assert stalls.seen == []
    wake(watchdog, clock, for_s=0.1, loop_ticks=False)
    assert stalls.seen == [pytest.approx(0.35)]


async def test_keep_running_starts_the_thread_and_raises_what_ended_it() -> None:
    calls = [0]

    def limit_s() -> float:
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("limit bug")
        return 10.0

    watchdog = LoopWatchdog(limit_s, Stalls(), tick_s=TICK_S)
    try:
        with pytest.raises(RuntimeError, match="limit bug"):
            await asyncio.wait_for(watchdog.keep_running(), 5)
        assert not watchdog.watching
        # Called again, as the supervisor does: watching again, on a fresh thread.
        again = asyncio.create_task(watchdog.keep_running())
        await asyncio.sleep(3 * TICK_S)
        assert watchdog.watching
        assert not again.done()
        again.cancel()
    finally:
        watchdog.stop()


async def test_a_watchdog_stopped_by_its_owner_is_not_a_failure() -> None:
    watchdog = LoopWatchdog(lambda: 10.0, Stalls(), tick_s=TICK_S)
    kept = asyncio.create_task(watchdog.keep_running())
    await asyncio.sleep(TICK_S)
    watchdog.stop()
    await asyncio.sleep(3 * TICK_S)
    assert not kept.done()  # waits to be cancelled; raises nothing
    kept.cancel()


async def test_stop_is_idempotent_and_ends_both_the_ticks_and_the_thread() -> None:
    stalls = Stalls()
    watchdog = await watching(lambda: 0.2, stalls)
    threads = {thread.name for thread in threading.enumerate()}
    assert "loop-watchdog" in threads
    watchdog.stop()
    watchdog.stop()
    assert "loop-watchdog" not in {thread.name for thread in threading.enumerate()}
    block(0.5)
    await asyncio.sleep(3 * TICK_S)
    assert stalls.seen == []
    watchdog.start(asyncio.get_running_loop())  # and it can start again
    watchdog.start(asyncio.get_running_loop())
    try:
        assert [t.name for t in threading.enumerate()].count("loop-watchdog") == 1
    finally:
        watchdog.stop()


# A process running a watchdog (1 s limit, the worker's default tick) over an idle loop, which
# blocks its loop for as many seconds as it reads on stdin.
CHILD = """
import asyncio, os, sys, time
from jobq.worker.loop_watchdog import LoopWatchdog

def on_stall(stalled_s):
    print(f"stalled {stalled_s}", flush=True)
    os._exit(9)

async def main():
    loop = asyncio.get_running_loop()
    LoopWatchdog(lambda: 1.0, None if sys.argv[1] == "default" else on_stall).start(loop)
    loop.add_reader(0, lambda: time.sleep(float(os.read(0, 100))))
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.fixture
def child() -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(on_stall: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, on_stall],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        return process

    yield start
    for process in started:
        process.kill()
        process.communicate()


def _block_its_loop(process: subprocess.Popen[str], seconds: float) -> tuple[str, str]:
    assert process.stdin is not None
    process.stdin.write(f"{seconds}\n")
    process.stdin.flush()
    return process.communicate(timeout=30)


def test_a_paused_process_is_not_a_blocked_loop(
    child: Callable[[str], subprocess.Popen[str]],
) -> None:
    process = child("test")
    os.kill(process.pid, signal.SIGSTOP)
    try:
        time.sleep(3.0)  # the pause is the test: three times the limit
    finally:
        os.kill(process.pid, signal.SIGCONT)
    time.sleep(2.0)
    assert process.poll() is None, process.communicate()
    # Still watching: a loop blocked for real ends it, with how long it had been blocked.
    out, _ = _block_its_loop(process, 3.0)
    assert process.returncode == 9
    stalled = float(out.split()[-1])
    assert 1.0 < stalled < 3.0


def test_by_default_a_blocked_loop_ends_the_process_with_exit_loop_blocked(
    child: Callable[[str], subprocess.Popen[str]],
) -> None:
    process = child("default")
    started = time.monotonic()
    _, err = _block_its_loop(process, 10.0)
    assert process.returncode == EXIT_LOOP_BLOCKED == 4
    assert time.monotonic() - started < 5.0  # well before the loop would have woken
    [line] = [json.loads(text) for text in err.splitlines() if "worker.loop_blocked" in text]
    assert line["level"] == "error"
    assert line["logger"] == "jobq.worker"
    assert line["action"] == "worker.loop_blocked"
    assert 1.0 <= line["stalled_s"] < 3.0  # rounded to 10 ms
    assert {"timestamp", "message"} <= line.keys()
