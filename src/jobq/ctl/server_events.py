"""Lifecycle events from PostgreSQL, through jq-server's ListJobEvents: the last few, then
(following) every later one, each once. What `jq-ctl events tail` reads without `--kafka`, so
it works whether or not Kafka is on.

Why following re-reads: job_events ids come from a sequence when a row is written, but
transactions commit in their own order, so an event with a smaller id can become visible after
a larger one was read. A follower that only asked for what comes after the last id it saw would
skip such an event for good. So each poll asks again from a little before that id, and drops
the ids it has already printed:

- from the newest id seen GRACE_S ago: a transaction that writes events lasts milliseconds, so
  an id below one visible that long ago is committed by now (or rolled back: sequence gaps are
  normal), and a quiet tail re-reads nothing;
- but never from more than WINDOW_IDS ids back, which bounds what each poll reads again when
  events pour in (a transaction still open after that many later events is not waited for).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from jobq.rpc._gen import common_pb2 as cpb
    from jobq.rpc._gen import job_service_pb2 as jpb

PAGE = 1000
"""Events asked for per call while following: ListJobEvents' largest page."""
WINDOW_IDS = 1000
"""How many ids before the newest one seen a poll reads again, at most; no more than PAGE, so
the first (full) page of a follower covers its whole window."""
GRACE_S = 5.0
"""How long after an id was seen as the newest a poll still reads the events below it again."""
POLL_S = 0.5
"""Seconds between polls while following."""


class EventLister(Protocol):
    """What this module needs of jq-ctl's client (jobq.ctl.client.Client)."""

    def list_job_events(
        self, job_id: str, queue: str, after_id: int, limit: int, newest: bool
    ) -> jpb.ListJobEventsResponse: ...


class ServerEvents:
    """The events of every job, or of one job or queue, as jq-server lists them."""

    def __init__(
        self,
        client: EventLister,
        *,
        job_id: str = "",
        queue: str = "",
        follow: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._job_id = job_id
        self._queue = queue
        self._follow = follow
        self._clock = clock
        self._sleep = sleep
        self._seen: set[int] = set()
        self._floor = 0
        """Polls read events above this id; every event above it that was printed is in
        _seen."""
        self._last_id = 0
        self._heads: deque[tuple[float, int]] = deque()
        """(when, newest id seen then), oldest first: where GRACE_S ago was."""

    def first(self, lines: int) -> list[cpb.JobEvent]:
        """The last `lines` events, oldest first."""
        if not self._follow:
            return list(self._list(0, lines, newest=True).events)
        # Following: ask for a whole window, not only the lines printed, so every event visible
        # now near the end is known as seen and the first re-read prints only what is new. A
        # full page spans at least WINDOW_IDS ids, so nothing unseen lies above the floor.
        reply = self._list(0, PAGE, newest=True)
        events = list(reply.events)
        self._seen = {event.id for event in events}
        self._last_id = reply.last_id
        self._floor = max(0, reply.last_id - WINDOW_IDS)
        self._heads.append((self._clock(), self._last_id))
        return events[-lines:]

    def poll(self) -> list[cpb.JobEvent]:
        """Wait POLL_S, then return the events not printed yet, in id order."""
        self._sleep(POLL_S)
        self._floor = self._rewind_point(self._clock())
        self._seen = {event_id for event_id in self._seen if event_id > self._floor}
        fresh: list[cpb.JobEvent] = []
        cursor = self._floor
        while True:
            reply = self._list(cursor, PAGE, newest=False)
            for event in reply.events:
                if event.id not in self._seen:
                    self._seen.add(event.id)
                    fresh.append(event)
            cursor = reply.last_id
            if len(reply.events) < PAGE:
                break
        self._last_id = max(self._last_id, cursor)
        self._heads.append((self._clock(), self._last_id))
        return fresh

    def _rewind_point(self, now: float) -> int:
        """Where the next poll reads from (see the module's docstring); never goes down."""
        settled = now - GRACE_S
        while len(self._heads) > 1 and self._heads[1][0] <= settled:
            self._heads.popleft()
        committed = self._heads[0][1] if self._heads and self._heads[0][0] <= settled else 0
        return max(self._floor, committed, self._last_id - WINDOW_IDS)

    def _list(self, after_id: int, limit: int, *, newest: bool) -> jpb.ListJobEventsResponse:
        return self._client.list_job_events(self._job_id, self._queue, after_id, limit, newest)

    def close(self) -> None:
        """Nothing to release: the client belongs to the command's state."""
