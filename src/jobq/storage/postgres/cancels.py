"""PostgreSQL operations of cancels and progress reports (issue 18; `sql/cancels.sql`).

A mixin of `PgJobStore` (they are `JobStore` operations, on its pool), kept apart so the
store's module stays about claims and reports. A RUNNING job's cancel is a request: the job
ends when its worker reports it stopped (`jobs_finish_cancelled`), or when its attempt ends
any other way that would run it again (see the head of `sql/cancels.sql`).
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from jobq.domain.errors import InvalidTransition
from jobq.domain.records import (
    AttemptProgress,
    AttemptRef,
    AttemptResult,
    Job,
    OperatorChange,
    ReportOutcome,
)
from jobq.domain.shards import served_shards, shard_of, split_by_shard
from jobq.domain.states import JobStatus, Reason
from jobq.storage.postgres.claims import attempt_columns, report_transitions
from jobq.storage.postgres.rows import job_detail_from_row
from jobq.storage.queries import query

__all__ = ["CancelOperations"]


class CancelOperations:
    """Needs `_pool`, and `job_get` and `_results` of the store it is mixed into."""

    _pool: asyncpg.Pool

    async def job_cancel(self, job_id: UUID, cancelled_by: str = "anonymous") -> OperatorChange:
        """Cancel for the caller labelled `cancelled_by`: PENDING or ASSIGNED →
        DEAD_LETTERED (CANCELLED) at once; RUNNING → a cancel request (`requested`, the job
        still RUNNING), told to the replicas by a notification; InvalidTransition otherwise.
        Returns the job, the status it left, and whether it was still to be announced (a
        transactional enqueue's job no server had published: taken out of enqueued_jobs)."""
        row = await self._pool.fetchrow(query("job_cancel"), job_id, cancelled_by, shard_of(job_id))
        if row is None:
            current = await self.job_get(job_id)  # raises JobNotFound
            raise InvalidTransition(job_id, "cancel", current.status.value)
        return OperatorChange(
            job_detail_from_row(row),
            JobStatus(row["from_status"]),
            row["unannounced"],
            has_dependants=row["has_dependants"],
            requested=row["requested"],
        )

    async def jobs_finish_cancelled(
        self, attempts: Sequence[AttemptRef], details: Sequence[str]
    ) -> ReportOutcome:
        """Workers' JOB_OUTCOME_CANCELLED reports: RUNNING → DEAD_LETTERED (CANCELLED) for
        current claims whose cancel was requested (`details`: the worker's account, kept as the
        event's detail); any other is stale (or an exact duplicate)."""
        if not attempts:
            return ReportOutcome([], [])
        rows: list[asyncpg.Record] = []
        paired = list(zip(attempts, details, strict=True))
        for shard, group in split_by_shard(paired, lambda p: p[0].job_id):
            rows += await self._pool.fetch(
                query("jobs_finish_cancelled"),
                *attempt_columns([a for a, _ in group]),
                [d for _, d in group],
                shard,
            )
        results = await self._results(attempts, rows, Reason.CANCELLED)
        return ReportOutcome(results, report_transitions(rows))

    async def jobs_cancel_requested_for_worker(self, worker_id: UUID) -> list[tuple[UUID, int]]:
        """The RUNNING attempts (job id, attempt) of a worker whose cancel was requested, on
        the shards this server serves."""
        found: list[tuple[UUID, int]] = []
        for shard in served_shards():
            rows = await self._pool.fetch(
                query("jobs_cancel_requested_for_worker"), worker_id, shard
            )
            found.extend((row["job_id"], row["attempt"]) for row in rows)
        return found

    async def jobs_record_progress(
        self, reports: Sequence[AttemptProgress]
    ) -> set[tuple[UUID, int]]:
        """Store the latest progress of RUNNING attempts still current; returns the (job id,
        attempt) applied (the rest were stale, or not running). A job named twice keeps the
        later report (the caller passes one per job)."""
        if not reports:
            return set()
        applied: set[tuple[UUID, int]] = set()
        for shard, group in split_by_shard(reports, lambda r: r.ref.job_id):
            rows = await self._pool.fetch(
                query("jobs_record_progress"),
                *attempt_columns([r.ref for r in group]),
                [r.fraction for r in group],
                [r.message for r in group],
                shard,
            )
            applied.update((row["job_id"], row["attempt"]) for row in rows)
        return applied

    # Provided by PgJobStore, which overrides both.
    async def job_get(self, job_id: UUID) -> Job:
        raise NotImplementedError

    async def _results(
        self,
        attempts: Sequence[AttemptRef],
        rows: Sequence[asyncpg.Record],
        duplicate_reason: Reason,
    ) -> list[AttemptResult]:
        raise NotImplementedError
