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

from jobq.domain.errors import FailedPrecondition, WorkerSuperseded
from jobq.domain.records import Worker
from jobq.domain.validation import parse_uuid
from jobq.server.worker_capacity import WorkerCapacity
from jobq.storage.stores import WorkerStore

DEFAULT_MAX_AGE_S = 5.0
MAX_KNOWN_WORKERS = 10_000
"""Workers whose incarnation is remembered (to skip a lookup per report); the oldest are
forgotten beyond this, and looked up again if they report."""


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


NO_INCARNATION = (
    "no incarnation presented: register first and present the incarnation RegisterWorker "
    "returns (a jq-worker older than this jq-server does not; upgrade it)"
)


def presented_incarnation(raw: str) -> UUID:
    """The incarnation a call presents; FAILED_PRECONDITION without one (a process that has not
    registered, or a jq-worker from before incarnations)."""
    if not raw:
        raise FailedPrecondition(NO_INCARNATION)
    return parse_uuid(raw, "incarnation")


class IncarnationGate:
    """Lets through only calls of a worker's current process: checked against this replica's
    memory while the database confirmed it recently, else against the database. A call of any
    other process is refused (WorkerSuperseded, FAILED_PRECONDITION) and changes nothing, and
    that process's stream here, if open, is closed."""

    def __init__(
        self, workers: WorkerStore, capacity: WorkerCapacity, limit: int = MAX_KNOWN_WORKERS
    ) -> None:
        self._workers = workers
        self._capacity = capacity
        self.known = KnownIncarnations(limit)

    async def current_worker(self, raw_id: str, raw_incarnation: str) -> UUID:
        """The worker's id, once the calling process is known to be its current one."""
        worker_id = parse_uuid(raw_id, "worker id")
        incarnation = presented_incarnation(raw_incarnation)
        if not self.known.confirmed(worker_id, incarnation):
            worker = await self._workers.worker_get(worker_id)  # WorkerNotFound
            self.check(worker, incarnation)
        return worker_id

    def check(self, worker: Worker, incarnation: UUID) -> None:
        """Refuse a call of any process but the worker's current one (remembering the
        confirmation when it is)."""
        if worker.incarnation == incarnation:
            self.known.remember(worker.worker_id, incarnation)
            return
        self.superseded(worker.worker_id, incarnation)
        if worker.incarnation is None:  # registered by an older jq-server: register again
            raise FailedPrecondition(
                f"worker {worker.worker_id} has no registered process; register again"
            )
        raise WorkerSuperseded(worker.worker_id)

    def superseded(self, worker_id: UUID, incarnation: UUID | None) -> None:
        """A call of a process that is not the worker's current one was refused: forget what
        this replica remembered of the worker, and close that process's stream if it is open
        here (it would get no claims anyway, see jobs_claim)."""
        self.known.forget(worker_id)
        if incarnation is not None:
            self._capacity.close(worker_id, incarnation)
