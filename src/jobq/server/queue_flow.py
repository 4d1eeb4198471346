"""Which queues the dispatcher claims through the limited claim (issue 18): a cache of the
names of the paused or limited queues (queues.flow_limited).

The cache decides only which claim statement a queue's jobs go to, never whether a limit holds:
the ordinary claim skips a flow-limited queue by itself, and the limited claim reads the limits
under the queue's lock. A stale entry can therefore only delay jobs, never start one past a
limit: a queue just limited is left by the ordinary claim until the cache learns of it, a queue
just freed is claimed through the limited claim (which then finds no limit) until it does. The
cache is read again when a replica changes a queue's flow settings (NOTIFY 'queues', and at
once on the replica that made the change) and at most `max_age_s` after it was read.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

MAX_AGE_S = 5.0


class QueueFlow:
    """The names of the flow-limited queues, as of the last read."""

    def __init__(
        self,
        read: Callable[[], Awaitable[set[str]]],
        *,
        max_age_s: float = MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._max_age_s = max_age_s
        self._clock = clock
        self._limited: frozenset[str] = frozenset()
        self._read_at: float | None = None

    @property
    def limited(self) -> frozenset[str]:
        return self._limited

    def invalidate(self) -> None:
        """Read again before the next claim (a queue's settings changed somewhere)."""
        self._read_at = None

    async def refresh(self) -> frozenset[str]:
        """The limited queues, read again if the cache is stale or was invalidated."""
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._max_age_s:
            self._read_at = now  # before the read: an invalidation during it reads again
            try:
                self._limited = frozenset(await self._read())
            except BaseException:
                self._read_at = None
                raise
        return self._limited

    def split(self, queues: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
        """(limited, ordinary) of a worker's queues."""
        limited = [q for q in queues if q in self._limited]
        if not limited:
            return [], list(queues)
        return limited, [q for q in queues if q not in self._limited]
