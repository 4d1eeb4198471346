"""The assignment-timeout and TTL reaper (SPEC §4, §6).

- An ASSIGNED job its worker has not acknowledged within `assignment_timeout_s` goes back to
  PENDING (ASSIGNMENT_TIMEOUT) without consuming a retry: another worker should get it rather
  than it being stranded. It is an interruption, though (a worker that dies before it can
  acknowledge its job looks just like this): a job interrupted more often than its queue's
  max_interruptions is dead-lettered instead (POISON), the rule every interruption follows
  (see JobStore.jobs_interrupt).
- A PENDING job older than its queue's `ttl_seconds` is dead-lettered (TTL_EXPIRED).

Both run in one service because both are cheap time-based sweeps with the same cadence. Each
step is one batch-limited statement that skips rows other replicas hold, so several jq-server
replicas can run it at once; a full batch wakes the loop again to work off a backlog.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from jobq.domain.records import Transition
from jobq.observability.logging_setup import get_logger
from jobq.server.lifecycle import Lifecycle
from jobq.server.service_loop import ServiceLoop
from jobq.storage.stores import MaintenanceStore

log = get_logger("jobq.reaper")


@dataclass(frozen=True, slots=True)
class ReaperReport:
    """What one run moved: assignments given back (or dead-lettered as POISON) and jobs whose
    TTL expired."""

    timed_out: list[Transition] = field(default_factory=list)
    expired: list[Transition] = field(default_factory=list)
    more: bool = False
    """A batch came back full: run again soon to work off the rest."""


class Reaper:
    """Returns unacknowledged assignments to PENDING and dead-letters expired PENDING jobs."""

    def __init__(
        self,
        maintenance: MaintenanceStore,
        *,
        assignment_timeout_s: float,
        interval_s: float,
        batch_limit: int = 1000,
        lifecycle: Lifecycle,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if batch_limit <= 0:
            raise ValueError(f"batch_limit must be positive, got {batch_limit}")
        self._maintenance = maintenance
        self._assignment_timeout_s = float(assignment_timeout_s)
        self._batch_limit = batch_limit
        self._lifecycle = lifecycle
        self._clock = clock
        self.loop = ServiceLoop("reaper", interval_s, self._tick)

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    async def run_once(self) -> ReaperReport:
        """One batch of assignment timeouts, then one batch of TTL expiries. Each batch is
        published as soon as it is committed, so a failure of the second loses nothing of the
        first."""
        now = self._clock() if self._clock is not None else None
        with self._lifecycle.write() as changes:
            timed_out = await self._maintenance.jobs_expire_assignments(
                self._assignment_timeout_s, now, self._batch_limit
            )
            changes.applied(timed_out)
        with self._lifecycle.write() as changes:
            expired = await self._maintenance.jobs_expire_ttl(now, self._batch_limit)
            changes.applied(expired)
        if timed_out or expired:
            # One summary line per run. The per-job lines (actions job.assignment_timeout and
            # job.ttl_expired) come from the lifecycle stream:
            # logging them here as well would count every job twice under the same action.
            log.info(
                "reaper moved jobs",
                action="reaper.swept",
                assignment_timeouts=len(timed_out),
                ttl_expired=len(expired),
            )
        return ReaperReport(
            timed_out=timed_out,
            expired=expired,
            more=len(timed_out) >= self._batch_limit or len(expired) >= self._batch_limit,
        )

    async def _tick(self) -> None:
        if (await self.run_once()).more:
            self.loop.wake()
