"""A small base for jq-server's background services (heartbeat monitor, reaper, gauges).

Each service is a `run_once` coroutine function run every `interval_s` seconds, or earlier when
woken (River's maintenance services, arq's `burst` mode): tests call `run_once()` directly and
never need the loop. A failing run is logged and retried after the interval, so a database
outage neither kills the service silently nor turns it into a tight error loop; a task that
ends by anything but `stop()` is logged too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from jobq.observability.logging_setup import get_logger

log = get_logger("jobq.service_loop")

RunOnce = Callable[[], Awaitable[object]]


class ServiceLoop:
    """Runs `run_once` now, then every `interval_s` seconds or on `wake()`, until stopped."""

    def __init__(self, name: str, interval_s: float, run_once: RunOnce) -> None:
        if not name:
            raise ValueError("a service loop needs a name (it prefixes its log actions)")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.name = name
        self.interval_s = float(interval_s)
        self._run_once = run_once
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the loop on the running event loop; does nothing if it is already running."""
        if self.running:
            return
        self._wake.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)
        self._task.add_done_callback(self._report_exit)

    async def stop(self) -> None:
        """Cancel the loop (a run in progress included) and wait until it has ended. Safe to
        call when stopped, and more than once."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # wait() rather than `await task`: it neither re-raises how the task ended (a crash is
        # logged by _report_exit) nor swallows a cancellation of the caller of stop().
        await asyncio.wait([task])

    def wake(self) -> None:
        """Run as soon as possible instead of at the end of the interval. A wake during a run
        makes the next run start right after it, so a run that found a full batch can call
        this to work off a backlog without waiting."""
        self._wake.set()

    async def run_once(self) -> object:
        """One run of the service, as the loop does it; errors propagate to the caller."""
        return await self._run_once()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._run_once()
            except Exception:
                log.exception(
                    f"{self.name} run failed; retrying in {self.interval_s:g}s",
                    action=f"{self.name}.error",
                    service_loop=self.name,
                )
                # A plain sleep, deaf to wake(): frequent wakes must not turn a persistent
                # failure (database down) into a tight loop. Wakes meanwhile are kept.
                await asyncio.sleep(self.interval_s)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval_s)

    def _report_exit(self, task: asyncio.Task[None]) -> None:
        """The loop only ends by cancellation; anything else (a BaseException escaping the
        handler above) must not go unnoticed."""
        if task.cancelled():
            return
        exc = task.exception()
        log.error(
            f"{self.name} stopped unexpectedly",
            action=f"{self.name}.crashed",
            service_loop=self.name,
            error=repr(exc),
        )
