"""The overview's last hour: jobs started, finished and failed per interval, and queue depth.

Every `interval_s` one sample reads PostgreSQL (`DashboardStore.dashboard_activity`), so the
charts show every replica's work, not only this one's: the job_events committed since the last
sample (a range scan of the primary key from the last id seen, its cost growing with the events
since then, not with the table) and the PENDING count (an index-only scan of the partial claim
index, capped at `PENDING_CAP`). `SAMPLES` samples are kept in memory, one hour at 5 s.

History starts empty when jq-server starts: the first sample only records where job_events
ends. job_events ids come from a sequence and are not committed in id order: an event that
commits after a sample read past its id is never counted. That only makes a chart point low
(by the few events in flight at a sample), it changes no job.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from jobq.server.service_loop import ServiceLoop
from jobq.storage.stores import DashboardStore

__all__ = ["INTERVAL_S", "PENDING_CAP", "SAMPLES", "History", "Point"]

INTERVAL_S = 5.0
SAMPLES = 720
"""Points kept: one hour at INTERVAL_S."""
PENDING_CAP = 1_000_000
"""The PENDING count stops at this (the index-only scan's cost is the backlog's size)."""


@dataclass(frozen=True, slots=True)
class Point:
    """One sample: events per second over the interval before it, and the backlog at it."""

    at: float
    """Unix time of the sample."""
    started_per_s: float
    finished_per_s: float
    failed_per_s: float
    pending: int

    def as_json(self) -> list[float]:
        return [
            round(self.at, 3),
            round(self.started_per_s, 3),
            round(self.finished_per_s, 3),
            round(self.failed_per_s, 3),
            self.pending,
        ]


class History:
    """Samples activity from PostgreSQL every `interval_s` (every replica's, not only ours)."""

    def __init__(
        self,
        store: DashboardStore,
        interval_s: float = INTERVAL_S,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._clock = clock
        self.interval_s = interval_s
        self.points: deque[Point] = deque(maxlen=SAMPLES)
        self._last_id: int | None = None
        self._last_at = 0.0
        self._listeners: list[Callable[[], None]] = []
        self.loop = ServiceLoop("dashboard_history", interval_s, self._sample)

    def on_activity(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after a sample that saw new events (any replica's)."""
        self._listeners.append(listener)

    def as_json(self) -> dict[str, object]:
        """The points for the overview's charts: columns at, started/s, finished/s, failed/s,
        pending."""
        return {
            "interval_s": self.interval_s,
            "columns": ["at", "started_per_s", "finished_per_s", "failed_per_s", "pending"],
            "points": [point.as_json() for point in self.points],
            "pending_cap": PENDING_CAP,
        }

    async def _sample(self) -> None:
        if self._last_id is None:
            # The first sample: where job_events ends now (no backfill: counting an hour of
            # events would be the one expensive statement of this loop).
            self._last_id = await self._store.dashboard_head()
            self._last_at = self._clock()
            return
        sample = await self._store.dashboard_activity(self._last_id, PENDING_CAP)
        now = self._clock()
        elapsed = max(now - self._last_at, 1e-3)
        moved = sample.last_id > self._last_id
        self._last_id, self._last_at = sample.last_id, now
        self.points.append(
            Point(
                at=now,
                started_per_s=sample.started / elapsed,
                finished_per_s=sample.finished / elapsed,
                failed_per_s=sample.failed / elapsed,
                pending=sample.pending,
            )
        )
        if moved:
            for listener in self._listeners:
                listener()
