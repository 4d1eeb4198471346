"""The dependency resolver (issue 18): moves WAITING jobs on once their prerequisites end.

Woken through the lifecycle stream by every job that ended (DONE or DEAD_LETTERED) with
`has_dependants` set, after that change committed, it runs dependants_resolve
(storage/sql/dependencies.sql) for them: a dependant whose prerequisites are now all DONE goes
PENDING (DEPENDENCIES_MET) and the dispatcher is woken; one whose prerequisite was
dead-lettered is dead-lettered (DEPENDENCY_FAILED). Its own moves are published on the same
stream, so a dead-lettered dependant's dependants are resolved next, level by level, down the
whole chain. Jobs nobody waits for never wake it.

A sweep of every WAITING job runs every `sweep_interval_s` (by the injected clock) whatever
the wake-ups: it resolves what a crash between a completion's commit and its resolution (or a
resolution that failed) left WAITING, on any replica. The sweep reads waiting_jobs (V22), which
is empty when dependencies are unused. Several replicas may resolve the same jobs: the
statement moves only jobs still WAITING, so each move happens once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from uuid import UUID

from jobq.domain.records import Transition
from jobq.domain.states import JobStatus
from jobq.observability.logging_setup import get_logger
from jobq.server.lifecycle import Lifecycle
from jobq.server.service_loop import ServiceLoop
from jobq.storage.stores import JobStore

log = get_logger("jobq.dependencies")

ENDED = (JobStatus.DONE, JobStatus.DEAD_LETTERED)


class DependencyResolver:
    """Resolves the dependants of ended jobs when woken, and sweeps all WAITING jobs now and
    then."""

    def __init__(
        self,
        jobs: JobStore,
        lifecycle: Lifecycle,
        *,
        sweep_interval_s: float,
        batch_limit: int = 1000,
        on_promoted: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch_limit <= 0:
            raise ValueError(f"batch_limit must be positive, got {batch_limit}")
        self._jobs = jobs
        self._lifecycle = lifecycle
        self._sweep_interval_s = float(sweep_interval_s)
        self._batch_limit = batch_limit
        self._on_promoted = on_promoted
        self._clock = clock
        self._ended: set[UUID] = set()
        self._last_sweep: float | None = None  # the first run sweeps: what a crash left
        self.loop = ServiceLoop("dependency-resolver", sweep_interval_s, self._tick)
        lifecycle.subscribe(self._observe)

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    def _observe(self, transitions: Sequence[Transition]) -> None:
        """Lifecycle subscriber: note the ended jobs that have dependants, and wake."""
        woken = False
        for transition in transitions:
            if transition.has_dependants and transition.to_status in ENDED:
                self._ended.add(transition.job_id)
                woken = True
        if woken:
            self.loop.wake()

    async def run_once(self, *, sweep: bool | None = None) -> list[Transition]:
        """Resolve the dependants of the ended jobs noted since the last run, then sweep if
        one is due (`sweep` forces or skips it). Returns the moves made."""
        moved: list[Transition] = []
        if self._ended:
            ended = sorted(self._ended)
            self._ended.clear()
            try:
                done = await self._resolve(ended)
            except BaseException:
                self._ended.update(ended)  # not lost: the next run (or the sweep) retries
                raise
            moved += done
            if len(done) >= self._batch_limit:
                self._ended.update(ended)  # more than a batch waited for them
        now = self._clock()
        due = self._last_sweep is None or now - self._last_sweep >= self._sweep_interval_s
        if sweep if sweep is not None else due:
            self._last_sweep = now
            swept = await self._resolve(None)
            if swept:
                log.info(
                    "dependency sweep moved jobs", action="dependencies.swept", count=len(swept)
                )
            moved += swept
            if len(swept) >= self._batch_limit:
                self._last_sweep = None  # a backlog: sweep again at the next run
        return moved

    async def _resolve(self, ended: Sequence[UUID] | None) -> list[Transition]:
        with self._lifecycle.write() as changes:
            moved = await self._jobs.dependants_resolve(ended, self._batch_limit)
            changes.applied(moved)
        if any(t.to_status is JobStatus.PENDING for t in moved):
            self._on_promoted()
        return moved

    async def _tick(self) -> None:
        await self.run_once()
        if self._ended or self._last_sweep is None:
            self.loop.wake()
