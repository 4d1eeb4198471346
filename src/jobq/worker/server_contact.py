"""When this worker last heard from its server, and so when it must have stopped its jobs.

The server declares a worker lost once it has recorded no heartbeat for its heartbeat timeout
(it says how long at registration), and runs the worker's jobs again elsewhere. A worker cut
off from its server (a partition, a paused or dead replica, PostgreSQL down behind it) must
stop them before that, or the same job runs twice at once. The server recorded the last
heartbeat no earlier than the worker sent it, so the worker counts from the *sending* of the
last call the server answered, and stops its jobs a margin before the timeout: the margin
covers killing them and the watchdog's own delay. Only answers count: a stream message may
have waited in a buffer while this process was paused, and tells nothing of the present.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

DEFAULT_TIMEOUT_S: Final = 30.0
"""The server's heartbeat timeout until it has said (scheduler.worker_heartbeat_timeout_s)."""
MARGIN_SHARE: Final = 0.2
MARGIN_MIN_S: Final = 0.5
MARGIN_MAX_S: Final = 5.0


class ServerContact:
    """The contact deadline, fed with the server's answers."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.timeout_s = DEFAULT_TIMEOUT_S
        self._answered_sent_at = clock()

    def answered(self, sent_at: float) -> None:
        """The server answered a call (registration, heartbeat) sent at `sent_at` (the
        clock's time)."""
        self._answered_sent_at = max(self._answered_sent_at, sent_at)

    def learn_timeout(self, timeout_s: float, interval_s: float) -> None:
        """What RegisterWorker said: the timeout itself, or, from a server that predates that
        field (0), its heartbeat interval, of which the timeout is about three."""
        if timeout_s > 0:
            self.timeout_s = timeout_s
        elif interval_s > 0:
            self.timeout_s = 3.0 * interval_s

    @property
    def margin_s(self) -> float:
        """How long before the server's timeout the jobs are stopped."""
        return min(MARGIN_MAX_S, max(MARGIN_MIN_S, MARGIN_SHARE * self.timeout_s))

    @property
    def deadline(self) -> float:
        """The clock's time by which, without another answer, the jobs must be stopped."""
        return self._answered_sent_at + self.timeout_s - self.margin_s

    def lost(self) -> bool:
        """Past the deadline: run nothing more, stop what runs."""
        return self._clock() > self.deadline

    def stall_limit_s(self, heartbeat_s: float) -> float:
        """How long the event loop may stay blocked before the worker must exit: a blocked
        loop sends no heartbeat, and the last one may have gone out a heartbeat interval
        before the block began."""
        return max(MARGIN_MIN_S, self.timeout_s - self.margin_s - heartbeat_s)

    def describe(self) -> str:
        """For logs and the reports of stopped jobs."""
        silent = self._clock() - self._answered_sent_at
        return (
            f"no contact with jq-server for {silent:.1f}s "
            f"(its heartbeat timeout is {self.timeout_s:g}s)"
        )
