"""Claims racing cancels and TTL expiry of the same jobs (V22's ready table).

A claim locks ready rows and then, with SKIP LOCKED, the jobs rows; a cancel and a TTL expiry
lock the jobs row and then, through the trigger, delete the ready row. Were the claim to wait
for a jobs row while holding ready rows, the two orders would deadlock. Here several claimers,
cancellers and reapers run at once on the same jobs, on their own connections: no error (a
deadlock is one), each job claimed at most once, none left PENDING, and the side tables agree
with jobs at the end."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime

import asyncpg
from support.side_tables import assert_side_tables_match, side_table_counts

from jobq.domain.ids import uuid7
from jobq.domain.records import NewJob
from jobq.domain.states import JobStatus
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.maintenance import PgMaintenanceStore
from jobq.storage.postgres.queues import PgQueueStore
from jobq.storage.postgres.workers import PgWorkerStore

JOBS = 300  # per queue
CLAIMERS = 3
LATER = datetime(2100, 1, 1, tzinfo=UTC)


async def test_claims_racing_cancels_and_ttl_expiry_lose_no_job_and_never_deadlock(
    db_dsn: str,
) -> None:
    pool = await asyncpg.create_pool(db_dsn, min_size=CLAIMERS + 3, max_size=CLAIMERS + 3)
    assert pool is not None
    try:
        jobs = PgJobStore(pool)
        await PgQueueStore(pool).queue_create("short", ttl_seconds=60)
        plain = [NewJob(uuid7(), "default", b"{}") for _ in range(JOBS)]
        short = [NewJob(uuid7(), "short", b"{}") for _ in range(JOBS)]
        await jobs.jobs_insert(plain)
        await jobs.jobs_insert(short)
        workers = []
        for _ in range(CLAIMERS):
            worker_id = uuid.uuid4()
            registration = await PgWorkerStore(pool).worker_register(
                worker_id, "host", 10_000, ["default", "short"]
            )
            workers.append((worker_id, registration.incarnation))

        claimed: list[uuid.UUID] = []
        cancelled: list[uuid.UUID] = []
        expired: list[uuid.UUID] = []
        done = asyncio.Event()

        async def claimer(worker_id: uuid.UUID, incarnation: uuid.UUID) -> None:
            empty = 0
            while empty < 3:  # three empty claims in a row once the others are done
                got = await jobs.jobs_claim(
                    worker_id, ["default", "short"], 7, incarnation=incarnation
                )
                claimed.extend(a.job.job_id for a in got)
                empty = empty + 1 if not got and done.is_set() else 0
                await asyncio.sleep(0)

        async def canceller(order: list[NewJob]) -> None:
            for job in order:
                change = await jobs.job_cancel(job.job_id, "token:race")
                if change.job.status is JobStatus.DEAD_LETTERED:
                    cancelled.append(job.job_id)

        async def reaper() -> None:
            maintenance = PgMaintenanceStore(pool)
            while moved := await maintenance.jobs_expire_ttl(LATER, limit=5):
                expired.extend(t.job_id for t in moved)
                await asyncio.sleep(0)

        async def others() -> None:
            try:
                # a canceller over every plain job in a random order, and the reaper
                await asyncio.gather(
                    canceller(random.Random(21).sample(plain, len(plain))), reaper()
                )
            finally:
                done.set()

        await asyncio.gather(others(), *(claimer(*w) for w in workers))

        everything = {j.job_id for j in plain + short}
        assert len(claimed) == len(set(claimed)), "a job was claimed twice"
        rows = await pool.fetch(
            "SELECT job_id, status FROM jobs WHERE job_id = ANY($1::uuid[])", list(everything)
        )
        statuses = {row["job_id"]: JobStatus(row["status"]) for row in rows}
        assert set(statuses) == everything
        # Nothing left PENDING: each job was claimed (ASSIGNED unless cancelled after),
        # cancelled, or expired; and it is DEAD_LETTERED exactly when cancelled or expired.
        assert JobStatus.PENDING not in statuses.values()
        ended = set(cancelled) | set(expired)
        assert {j for j, s in statuses.items() if s is JobStatus.DEAD_LETTERED} == ended
        assert {j for j, s in statuses.items() if s is JobStatus.ASSIGNED} == set(claimed) - ended
        assert set(claimed) | ended == everything
        assert not set(expired) & set(claimed)  # an expired job was PENDING, never claimed
        # the race really happened: each side got some of the contested jobs
        assert claimed
        assert cancelled
        assert expired
        await assert_side_tables_match(pool)
        ready, held, waiting = await side_table_counts(pool)
        assert (ready, held, waiting) == (0, len(set(claimed) - ended), 0)
    finally:
        await pool.close()
