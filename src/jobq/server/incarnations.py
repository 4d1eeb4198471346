"""What this replica knows of each worker's current incarnation, so that reports need no
database lookup per call.

The stored incarnation (workers.incarnation) is the truth, and another replica may change it
at any moment: a process restarted under the same worker id registers there. So an entry
here is trusted only for `max_age_s` after the database last confirmed it (a registration, a
stream opened, a heartbeat or a lookup on this replica); after that the next report looks it
up again. A superseded process's reports reaching a replica that did not see the newer
registration are therefore refused at the latest `max_age_s` after it (heartbeats, always
checked against the database, usually refuse it sooner). Until then they can change nothing:
the registration released every claim the worker id held, in its own transaction, and claims
are made only for the current incarnation's stream, so each of those reports fails its claim
fence on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

DEFAULT_MAX_AGE_S = 5.0


class KnownIncarnations:
    """Worker id → (incarnation, when the database last confirmed it); keeps only the `limit`
    most recently confirmed workers (every worker started without --worker-id has an id of
    its own, and a map of every id ever seen would grow as long as the server runs)."""

    def __init__(
        self,
        limit: int,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._max_age_s = max_age_s
        self._clock = clock
        self._known: dict[UUID, tuple[UUID, float]] = {}

    def __len__(self) -> int:
        return len(self._known)

    def __contains__(self, worker_id: object) -> bool:
        return worker_id in self._known

    def confirmed(self, worker_id: UUID, incarnation: UUID) -> bool:
        """True when `incarnation` is the worker's as the database said less than `max_age_s`
        ago; False means: look it up."""
        entry = self._known.get(worker_id)
        if entry is None or entry[0] != incarnation:
            return False
        return self._clock() - entry[1] < self._max_age_s

    def remember(self, worker_id: UUID, incarnation: UUID) -> None:
        """The database has just confirmed `incarnation` as the worker's current one."""
        self._known.pop(worker_id, None)
        self._known[worker_id] = (incarnation, self._clock())
        if len(self._known) > self._limit:
            del self._known[next(iter(self._known))]

    def forget(self, worker_id: UUID) -> None:
        self._known.pop(worker_id, None)
