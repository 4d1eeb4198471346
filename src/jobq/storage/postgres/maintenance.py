"""PostgreSQL storage of the recovery monitors: lost workers, assignment timeouts, TTL expiry.

Each operation is one statement (see `sql/maintenance.sql`) that locks its candidates with
`FOR UPDATE SKIP LOCKED`, moves them and writes their job_events rows, so several jq-server
replicas can run the monitors against one database and every job is moved exactly once.
Operations take `now` so tests can move time instead of sleeping; None means the database
clock, which is the only clock staleness is ever judged by in production.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from jobq.domain.records import AttemptRef, Transition
from jobq.domain.shards import served_shards
from jobq.domain.states import JobStatus, Reason
from jobq.storage.postgres.claims import interrupt_claims
from jobq.storage.postgres.rows import transition_from_row
from jobq.storage.queries import query

DEFAULT_BATCH_LIMIT = 1000
"""Rows one statement moves at most: a backlog is worked off in bounded transactions."""


class PgMaintenanceStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def workers_mark_lost(
        self, timeout_s: float, now: datetime | None = None, limit: int = DEFAULT_BATCH_LIMIT
    ) -> list[UUID]:
        """Mark ONLINE/DRAINING workers without a heartbeat for `timeout_s` OFFLINE; returns
        the ids this call marked (a worker another replica is marking is skipped, not waited
        for). Their jobs are rescued separately, through the JobStore's fenced interruption
        path (JobStore.jobs_interrupt)."""
        _check_limit(limit)
        lost: list[UUID] = []
        for shard in served_shards():  # each shard's workers (V25), within the one limit
            if len(lost) >= limit:
                break
            rows = await self._pool.fetch(
                query("workers_mark_lost"), float(timeout_s), now, limit - len(lost), shard
            )
            lost.extend(row["worker_id"] for row in rows)
        return lost

    async def jobs_held_by_offline_workers(
        self, timeout_s: float, now: datetime | None = None, limit: int = DEFAULT_BATCH_LIMIT
    ) -> list[AttemptRef]:
        """Claims still ASSIGNED/RUNNING on OFFLINE workers silent for `timeout_s`: left over
        when a monitor run stopped between marking workers lost and rescuing their jobs.

        Workers that deregistered recently are not included (their heartbeat is fresh): the
        Deregister RPC releases their jobs without counting an interruption."""
        _check_limit(limit)
        held: list[AttemptRef] = []
        for shard in served_shards():  # each shard's claims (V25), within the one limit
            if len(held) >= limit:
                break
            rows = await self._pool.fetch(
                query("jobs_held_by_offline_workers"),
                float(timeout_s),
                now,
                limit - len(held),
                shard,
            )
            held.extend(
                AttemptRef(row["job_id"], row["attempt"], row["worker_id"], row["claim_id"])
                for row in rows
            )
        return held

    async def jobs_expire_assignments(
        self, timeout_s: float, now: datetime | None = None, limit: int = DEFAULT_BATCH_LIMIT
    ) -> list[Transition]:
        """ASSIGNED longer than `timeout_s` → PENDING (ASSIGNMENT_TIMEOUT), without consuming a
        retry but counting an interruption: a job now interrupted more often than its queue's
        max_interruptions is dead-lettered instead (POISON). At most `limit` jobs, locked with
        SKIP LOCKED and moved in one transaction. The transitions name the worker that held
        the job."""
        _check_limit(limit)
        async with self._pool.acquire() as conn, conn.transaction():
            expired: list[AttemptRef] = []
            for shard in served_shards():  # each shard's (V25), within the one limit
                if len(expired) >= limit:
                    break
                rows = await conn.fetch(
                    query("jobs_expired_assignments"),
                    float(timeout_s),
                    now,
                    limit - len(expired),
                    shard,
                )
                expired.extend(
                    AttemptRef(row["job_id"], row["attempt"], row["worker_id"], row["claim_id"])
                    for row in rows
                )
            return await interrupt_claims(
                conn,
                expired,
                Reason.ASSIGNMENT_TIMEOUT,
                f"not acknowledged within {float(timeout_s):g} s",
                (JobStatus.ASSIGNED,),
            )

    async def jobs_expire_ttl(
        self, now: datetime | None = None, limit: int = DEFAULT_BATCH_LIMIT
    ) -> list[Transition]:
        """PENDING jobs older (created_at) than their queue's ttl_seconds → DEAD_LETTERED
        (TTL_EXPIRED, error 'TTL expired'); at most `limit` jobs. Queues without a TTL are
        never touched."""
        _check_limit(limit)
        expired: list[Transition] = []
        for shard in served_shards():  # each shard's (V25), within the one limit
            if len(expired) >= limit:
                break
            rows = await self._pool.fetch(
                query("jobs_expire_ttl"), now, limit - len(expired), shard
            )
            expired.extend(transition_from_row(row) for row in rows)
        return expired

    async def enqueued_jobs_take(self, limit: int = DEFAULT_BATCH_LIMIT) -> list[Transition]:
        """The SUBMITTED transitions of up to `limit` jobs written by transactional enqueues
        and not announced yet, taken out of enqueued_jobs (each by one caller, once)."""
        _check_limit(limit)
        taken: list[Transition] = []
        for shard in served_shards():  # each shard's (V25), within the one limit
            if len(taken) >= limit:
                break
            rows = await self._pool.fetch(query("enqueued_jobs_take"), limit - len(taken), shard)
            taken.extend(
                Transition.submitted(row["job_id"], row["queue_name"], row["created_at"])
                for row in rows
            )
        return taken


def _check_limit(limit: int) -> None:
    # LIMIT 0 would make a loop that waits for "fewer than a full batch" spin forever, and a
    # negative LIMIT is an SQL error; refuse both where the mistake is made.
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
