"""The worker's time, injected: what its loops read the time with and sleep with.

Every worker loop that decides by elapsed time (the heartbeats, the server-contact watch, the
reporter's linger and retry, the loop watchdog) takes a `Clock` and, where it waits, a `Sleep`,
defaulting to `time.monotonic` and `asyncio.sleep`. Their unit tests pass a fake pair that
they advance by hand, so no test sleeps for an interval or a deadline to pass (STYLE.md,
"Inject the clock"). Everything that compares times must share one clock (a heartbeat's
sending time is compared with the contact deadline): the runtime hands its own to each part.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

__all__ = ["Clock", "Sleep"]

Clock = Callable[[], float]
"""Seconds on a monotonic scale (only differences mean anything)."""
Sleep = Callable[[float], Awaitable[None]]
"""Wait that many seconds of the clock's time."""
