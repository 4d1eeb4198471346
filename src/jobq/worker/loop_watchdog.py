"""A thread that ends the worker when its event loop has been blocked too long.

An `async def` handler that calls blocking code (`time.sleep(10)`, a synchronous HTTP call)
blocks the event loop: no heartbeat leaves, so the server declares the worker lost after its
heartbeat timeout and runs its jobs elsewhere, while this worker's command jobs (processes of
their own) run on: the same job runs twice at once. Nothing on the loop can stop them, because
the loop is what is blocked; a thread can.

`LoopWatchdog.start(loop)` schedules a timer callback on the loop every `tick_s` that records
the time (one float attribute write: no lock, nothing per job), and starts a daemon thread that
wakes every `tick_s` and checks how long ago the loop last ticked. Beyond `limit_s()` (read at
every check: the runtime learns the server's heartbeat timeout when it registers; 0 or less
turns the check off) it calls `on_stall(stalled_s)`.

The default `on_stall` writes one JSON log line straight to stderr (`os.write`: the logging
machinery's locks may be held by the blocked thread) and exits at once with EXIT_LOOP_BLOCKED
(`os._exit`: no cleanup that could block too). Exiting is the right answer, not a last resort:
- the server is about to declare the worker lost and re-run its jobs, whatever we do;
- exiting closes the job guardian's pipe, so the guardian kills every command job's processes
  (`guardian_process.py`), and the handler threads of Python jobs die with the process;
- a supervisor (systemd, Kubernetes) restarts the worker, whose new registration releases its
  jobs at once, instead of after the heartbeat timeout.

A paused process is not a blocked loop: after SIGSTOP/SIGCONT, or a VM paused and resumed, the
loop has not ticked for as long as the pause, but neither has the thread run. So only time the
thread itself was running counts: when its own sleep overran `tick_s` by more than PAUSE_SLACK_S,
it takes the gap for a pause, counts the loop as having ticked then, and skips that check.
The price: a loop blocked in a call that holds the GIL also keeps the thread from running;
if that call lasts past PAUSE_SLACK_S, its time is taken for a pause too (the common blockers,
`time.sleep`, blocking I/O, `subprocess.run`, release the GIL).

The thread must not die unnoticed either: `keep_running()` is a background loop for the
worker's task supervisor (like the job guardian's), which starts the thread if it is not
running and raises what ended it, so the supervisor logs it and starts it again, or stops the
worker when it keeps dying. The decisions read an injected `clock`: `tick()` and `observe(now)`
are what the loop's timer and the thread do at each wake, and tests call them with a fake
clock instead of blocking a loop for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Final

from jobq.worker.clock import Clock

__all__ = [
    "EXIT_LOOP_BLOCKED",
    "PAUSE_SLACK_S",
    "LoopWatchdog",
    "WatchdogStopped",
    "exit_loop_blocked",
]

EXIT_LOOP_BLOCKED: Final = 4
"""The exit code of a worker whose event loop was blocked past its limit: a supervisor should
restart it (unlike EXIT_SUPERSEDED, 3)."""
PAUSE_SLACK_S: Final = 1.0
"""How much longer than `tick_s` the thread's own sleep may take before the gap is taken for a
pause of the whole process (SIGSTOP, a VM pause) rather than counted as a blocked loop."""
_STDERR_WAIT_S: Final = 1.0
"""How long the last log line may wait for a full stderr pipe before the exit goes without it."""


class WatchdogStopped(Exception):
    """The watching thread ended although nobody stopped the watchdog."""


class LoopWatchdog:
    """Watches one event loop from a thread of its own. `start`/`stop` are idempotent."""

    def __init__(
        self,
        limit_s: Callable[[], float],
        on_stall: Callable[[float], None] | None = None,
        *,
        tick_s: float = 0.25,
        clock: Clock = time.monotonic,
    ) -> None:
        """`limit_s()` is how long the loop may go without ticking (<= 0: no limit); it is
        called from the watchdog's thread. `on_stall(stalled_s)` is called there, once per
        stall (default: `exit_loop_blocked`). `clock` is read by both the loop and the
        thread."""
        if tick_s <= 0:
            raise ValueError("tick_s must be positive")
        self._limit_s = limit_s
        self._on_stall = on_stall or exit_loop_blocked
        self._tick_s = tick_s
        self._clock = clock
        self._last_tick = clock()
        """The clock's time of the loop's last tick: written by the loop, and by the thread
        after a pause; a float attribute's assignment is atomic, so no lock."""
        self._last_wake = self._last_tick
        """The clock's time of the thread's last wake (only the thread writes it)."""
        self._reported_tick = -1.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ended: asyncio.Event | None = None
        """Set (on the loop) when the thread ends."""
        self._failure: BaseException | None = None
        """What ended the thread, if it was an exception."""

    @property
    def watching(self) -> bool:
        """The thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start ticking on `loop` and watching it; call from the loop's thread. Starts a
        thread that died again (a no-op while it runs)."""
        if self.watching:
            return
        if self._timer is not None:  # a dead thread's ticks: start afresh
            self._timer.cancel()
        self._loop = loop
        self._stopping = threading.Event()
        self._ended = asyncio.Event()
        self._failure = None
        self._last_tick = self._last_wake = self._clock()
        self._timer = loop.call_later(self._tick_s, self.tick)
        self._thread = threading.Thread(
            target=self._watch,
            args=(self._stopping, loop, self._ended),
            name="loop-watchdog",
            daemon=True,
        )
        self._thread.start()

    async def keep_running(self) -> None:
        """A background loop for the task supervisor: start watching the running loop (if
        not already) and raise what ended the thread, should it end while not stopped."""
        self.start(asyncio.get_running_loop())
        stopping, ended, thread = self._stopping, self._ended, self._thread
        assert ended is not None  # set by start
        await ended.wait()
        if thread is not None:
            # `ended` is set from the thread's last lines: let it finish them, so that once
            # this returns `watching` is False and a restart starts a fresh thread.
            thread.join(timeout=self._tick_s)
        if self._failure is not None:
            raise self._failure
        if stopping.is_set():  # stopped by its owner on purpose: nothing to restart
            await asyncio.get_running_loop().create_future()
        raise WatchdogStopped("the loop watchdog's thread ended")

    def stop(self) -> None:
        """Stop the ticks and the thread; call from the loop's thread."""
        thread, self._thread = self._thread, None
        self._stopping.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5 * self._tick_s)  # it wakes at once: the event is set

    def observe(self, now: float) -> None:
        """What the thread does when it wakes at `now`: a wake that overran `tick_s` by more
        than PAUSE_SLACK_S is a pause of the whole process, which the loop is not to blame
        for (it counts as a tick); any other wake checks the loop."""
        overslept = now - self._last_wake > self._tick_s + PAUSE_SLACK_S
        self._last_wake = now
        if overslept:
            self._last_tick = now
            return
        self.check(now)

    def check(self, now: float) -> None:
        """Call `on_stall` if the loop has not ticked for longer than `limit_s()` at `now`
        (the thread's check, public for tests)."""
        limit = self._limit_s()
        last = self._last_tick
        stalled = now - last
        if limit <= 0 or stalled <= limit or last == self._reported_tick:
            return
        self._reported_tick = last  # once per stall, for an `on_stall` that returns
        self._on_stall(stalled)

    def tick(self) -> None:
        """The loop's timer callback: record that the loop runs, and tick again later."""
        self._last_tick = self._clock()
        if not self._stopping.is_set() and self._loop is not None:
            self._timer = self._loop.call_later(self._tick_s, self.tick)

    def _watch(
        self, stopping: threading.Event, loop: asyncio.AbstractEventLoop, ended: asyncio.Event
    ) -> None:
        try:
            while not stopping.wait(self._tick_s):
                self.observe(self._clock())
        except Exception as exc:  # handed to `keep_running`, not left to threading.excepthook
            self._failure = exc
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(ended.set)


def exit_loop_blocked(stalled_s: float) -> None:
    """Write why to stderr as one JSON line, then exit with EXIT_LOOP_BLOCKED at once."""
    line = {
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z"),
        "level": "error",
        "service": "jq-worker",
        "logger": "jobq.worker",
        "message": "the event loop is blocked and the server is about to declare this worker "
        "lost; exiting, so that its jobs stop and it can be restarted",
        "action": "worker.loop_blocked",
        "stalled_s": round(stalled_s, 2),
        "exit_code": EXIT_LOOP_BLOCKED,
    }
    data = (json.dumps(line) + "\n").encode()
    try:
        # A pipe nobody reads must not keep the worker alive: wait for room only so long (a
        # pipe that has room takes a line this short whole).
        if select.select([], [2], [], _STDERR_WAIT_S)[1]:
            os.write(2, data)
    except OSError:  # stderr closed: exit anyway
        pass
    os._exit(EXIT_LOOP_BLOCKED)
