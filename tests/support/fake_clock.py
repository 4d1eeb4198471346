"""A clock and a sleep that tests move by hand, for the worker's loops (`jobq.worker.clock`).

`FakeClock()` is the clock; `clock.sleep` is the matching `Sleep`: a sleeper waits until the
test `advance`s the clock past its wake time. `await clock.sleeping(n)` waits (a real event, with
a deadline) until `n` sleepers are parked, so a test knows a loop has reached its next wait
before moving time on. No real time passes for intervals, deadlines or retry delays.
"""

from __future__ import annotations

import asyncio


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []
        """Every sleep asked for, in order."""
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self._parked = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        wake = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, wake))
        self._parked.set()
        try:
            await wake
        finally:
            self._sleepers = [(at, f) for at, f in self._sleepers if f is not wake]

    def advance(self, seconds: float) -> None:
        """Move time on; wake every sleeper whose time has come (they run at the next await)."""
        self.now += seconds
        for at, wake in self._sleepers:
            if at <= self.now and not wake.done():
                wake.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting for time to pass."""
        return sum(1 for _, wake in self._sleepers if not wake.done())

    async def sleeping(self, count: int = 1, within: float = 5.0) -> None:
        """Wait until at least `count` sleepers are parked (a real deadline: `within`)."""
        async with asyncio.timeout(within):
            while self.sleepers < count:
                self._parked.clear()
                await self._parked.wait()
