"""The loop watchdog on real event loops: a loop blocked past its limit is reported once, with
how long it had stalled; a responsive loop, a limit of 0 and a stopped watchdog report nothing;
the limit is read at every check. And in a child process, as a worker runs it: a SIGSTOP longer
than the limit is a pause, not a stall; a blocked loop ends the process, by default with
EXIT_LOOP_BLOCKED and one JSON line on stderr."""

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


async def test_a_blocked_loop_is_reported_once_with_how_long_it_stalled() -> None:
    stalls = Stalls()
    watchdog = await watching(lambda: 0.3, stalls)
    try:
        block(1.0)
        await asyncio.sleep(3 * TICK_S)
    finally:
        watchdog.stop()
    [stalled] = stalls.seen  # once, although the loop stayed blocked for three limits
    assert 0.3 < stalled < 1.0


async def test_a_responsive_loop_is_not_reported() -> None:
    stalls = Stalls()
    watchdog = await watching(lambda: 0.5, stalls)
    try:
        for _ in range(30):
            block(0.02)  # busy, but never for long
            await asyncio.sleep(0.03)
    finally:
        watchdog.stop()
    assert stalls.seen == []


async def test_a_limit_of_zero_turns_the_check_off_and_the_limit_is_read_at_every_check() -> None:
    stalls = Stalls()
    limit = [0.0]  # as before the worker registers, where the runtime may say "none yet"
    watchdog = await watching(lambda: limit[0], stalls)
    try:
        block(0.8)
        await asyncio.sleep(3 * TICK_S)
        assert stalls.seen == []
        limit[0] = 0.3
        block(0.8)
        await asyncio.sleep(3 * TICK_S)
    finally:
        watchdog.stop()
    assert len(stalls.seen) == 1


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
