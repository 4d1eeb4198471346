"""PostgreSQL JobStore: submits, claims, acknowledgements, results and manual operations.

Every status change runs as one statement that also inserts its job_events rows (see
`sql/jobs.sql`), so a batch costs one round trip and the history can never disagree with the
job. Reports are fenced: they apply only to the claim a worker currently holds (job, attempt,
worker and the claim's random id).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from jobq.domain.errors import (
    InvalidTransition,
    JobNotFound,
    PrerequisiteNotFound,
    QueueNotFound,
    Unavailable,
)
from jobq.domain.records import (
    Assignment,
    AttemptRef,
    AttemptResult,
    DirectSubmit,
    Failure,
    Job,
    JobPage,
    LimitedClaim,
    NewJob,
    OperatorChange,
    ReportOutcome,
    Submitted,
    Success,
    Transition,
)
from jobq.domain.retry import RetryPolicy, decide_after_failure
from jobq.domain.shards import served_shards, shard_of, split_by_shard
from jobq.domain.states import JobStatus, Reason
from jobq.storage.page_token import decode_page_token, encode_page_token
from jobq.storage.pool import CLAIM_SESSION_SETTINGS, settings_statement
from jobq.storage.postgres.cancels import CancelOperations
from jobq.storage.postgres.claims import (
    Conn,
    attempt_columns,
    by_shard,
    held_by_worker,
    interrupt_claims,
    report_transitions,
)
from jobq.storage.postgres.job_insert import InsertBatch, assigned_arguments
from jobq.storage.postgres.limited_claims import claim_limited
from jobq.storage.postgres.rows import job_detail_from_row, job_from_row, transition_from_row
from jobq.storage.queries import query
from jobq.storage.stores import ActiveDepth

LOCK_ATTEMPTS_WITHIN_S = 5.0
"""How long a submit with prerequisites keeps trying to lock them (see job_prerequisites_lock)
before it answers UNAVAILABLE: a prerequisite is locked for the length of one commit, so
running out means something holds it far longer."""


async def _lock_prerequisites(conn: Conn, prerequisites: Sequence[UUID]) -> None:
    """Lock the existing jobs among `prerequisites` (job_prerequisites_lock, NOWAIT), first in
    the caller's transaction, retrying after a short pause while one is locked by a change
    committing: holding nothing while it waits, the submit can never deadlock."""
    delay, deadline = 0.002, time.monotonic() + LOCK_ATTEMPTS_WITHIN_S
    while True:
        try:
            async with conn.transaction():  # a savepoint: a failed attempt leaves no lock
                await _prerequisite_statuses(conn, prerequisites)
            return
        except asyncpg.LockNotAvailableError:
            if time.monotonic() >= deadline:
                raise Unavailable("the jobs named in depends_on stay locked; try again") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)


async def _prerequisite_statuses(conn: Conn, prerequisites: Sequence[UUID]) -> list[asyncpg.Record]:
    """job_prerequisites_lock shard by shard, in shard order (every submit locks in that one
    order); the rows of all of them."""
    rows: list[asyncpg.Record] = []
    for shard, group in split_by_shard(sorted(prerequisites), lambda p: p):
        rows += await conn.fetch(query("job_prerequisites_lock"), group, shard)
    return rows


async def _insert_dependent(conn: Conn, job: NewJob, notify: bool) -> Submitted:
    """One job with prerequisites, in the caller's transaction, which holds their locks
    already (_lock_prerequisites; taken again here, it reads their statuses): see
    job_insert_dependent."""
    try:
        rows = await _prerequisite_statuses(conn, job.depends_on)
    except asyncpg.LockNotAvailableError:
        # one that did not exist when the batch locked its prerequisites, committed since
        raise Unavailable("a job named in depends_on is locked; try again") from None
    statuses = {row["job_id"]: JobStatus(row["status"]) for row in rows}
    missing = [p for p in job.depends_on if p not in statuses]
    if missing:
        raise PrerequisiteNotFound(missing[0])
    dead = [p for p in job.depends_on if statuses[p] is JobStatus.DEAD_LETTERED]
    if dead:
        # Policy: dead-lettered at once, as it would be had it been submitted a moment before
        # its prerequisite failed; the submit succeeds and the job says why (README).
        status, error = JobStatus.DEAD_LETTERED, f"dependency {dead[0]} was dead-lettered"
    elif all(statuses[p] is JobStatus.DONE for p in job.depends_on):
        status, error = JobStatus.PENDING, None
    else:
        status, error = JobStatus.WAITING, None
    row = await conn.fetchrow(
        query("job_insert_dependent"),
        job.job_id,
        job.queue_name,
        job.payload,
        job.priority,
        job.max_retries,
        job.not_before,
        job.idempotency_key,
        job.correlation_id,
        status.value,
        list(job.depends_on),
        error,
        notify,
        job.concurrency_key,
        job.trace_context,
        shard_of(job.job_id),
    )
    if row is not None:
        return Submitted(row["job_id"], row["created_at"], status=status)
    holder = await conn.fetchrow(
        query("job_holder"), job.job_id, job.idempotency_key, shard_of(job.job_id)
    )
    if holder is None:  # the conflicting job was deleted since (its queue): a rare race
        raise Unavailable(f"the insert of job {job.job_id} collided with a job now gone")
    return Submitted(holder["job_id"], holder["created_at"], existing=True)


class PgJobStore(CancelOperations):
    """`claim_pool`, when given, runs only claims, on connections whose session has
    `enable_sort = off` (see `create_claim_pool`); without it each claim sets that for its own
    transaction, which costs three more round trips. Cancels and progress reports are
    `CancelOperations`'."""

    def __init__(self, pool: asyncpg.Pool, claim_pool: asyncpg.Pool | None = None) -> None:
        self._pool = pool
        self._claim_pool = claim_pool

    # --- submit and read --------------------------------------------------------------------

    async def jobs_insert(self, jobs: Sequence[NewJob], *, notify: bool = True) -> list[Submitted]:
        """Insert jobs (PENDING) with their SUBMITTED events, all or none; returns what
        happened to each, in input order. QueueNotFound names the first unknown queue. With
        `notify`, a commit that inserted something also notifies the dispatchers listening on
        `jobq_jobs`.

        A job whose idempotency key a job already holds is not inserted: its Submitted is the
        holder's id with `existing` set. A key is held for as long as its job's row exists,
        whatever the job's status (db/migrations/V13: the unique index
        jobs_idempotency_key_idx enforces it; were finished jobs ever purged, their keys would
        free up). Two jobs of the batch with one key: the first is inserted (or finds the
        holder), the later ones get its outcome as existing. A job whose client chose its id
        (`id_from_client`) is likewise not inserted when a job has that id already: that job is
        this one, submitted before (jobs_insert_by_id)."""
        if not jobs:
            return []
        if any(job.depends_on for job in jobs):
            return await self._insert_with_dependencies(jobs, notify)
        batch = InsertBatch(jobs)
        statements = batch.statements(notify)
        try:
            if len(statements) == 1:  # one statement, its own transaction (see jobs_insert)
                name, arguments = statements[0]
                rows = await self._pool.fetch(query(name), *arguments)
                return batch.results(rows) if name == "jobs_insert" else batch.results((), rows)
            rows = []
            id_rows: list[asyncpg.Record] = []
            async with self._pool.acquire() as conn, conn.transaction():
                # Keys and client ids in one batch, or jobs of several shards: every statement,
                # one commit, so the batch stays all or nothing. Keys first and ids second, each
                # in shard order, in every such transaction. PostgreSQL delivers one
                # notification per transaction for them all.
                for name, arguments in statements:
                    found = await conn.fetch(query(name), *arguments)
                    (rows if name == "jobs_insert" else id_rows).extend(found)
            return batch.results(rows, id_rows)
        except (asyncpg.NotNullViolationError, asyncpg.ForeignKeyViolationError):
            await self._raise_missing_queue({job.queue_name for job in jobs})
            raise

    async def _insert_with_dependencies(
        self, jobs: Sequence[NewJob], notify: bool
    ) -> list[Submitted]:
        """jobs_insert for a batch in which some jobs have prerequisites (issue 18): one
        transaction, all or none. The jobs without go first, in one statement as always; then
        each job with prerequisites, in batch order, locks them, is inserted WAITING, PENDING
        or DEAD_LETTERED by their statuses (job_insert_dependent), and marks them as having
        dependants. A job may name a job inserted before it in the same batch (the transaction
        sees it). PrerequisiteNotFound for the first unknown prerequisite: nothing is written."""
        plain = [job for job in jobs if not job.depends_on]
        prerequisites = sorted({p for job in jobs for p in job.depends_on})
        outcomes: dict[int, Submitted] = {}
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await _lock_prerequisites(conn, prerequisites)
                if plain:
                    batch = InsertBatch(plain)
                    rows: list[asyncpg.Record] = []
                    id_rows: list[asyncpg.Record] = []
                    for name, arguments in batch.statements(notify):
                        found = await conn.fetch(query(name), *arguments)
                        (rows if name == "jobs_insert" else id_rows).extend(found)
                    plain_results = iter(batch.results(rows, id_rows))
                    for index, job in enumerate(jobs):
                        if not job.depends_on:
                            outcomes[index] = next(plain_results)
                for index, job in enumerate(jobs):
                    if job.depends_on:
                        outcomes[index] = await _insert_dependent(conn, job, notify)
        except (asyncpg.NotNullViolationError, asyncpg.ForeignKeyViolationError):
            await self._raise_missing_queue({job.queue_name for job in jobs})
            raise
        return [outcomes[index] for index in range(len(jobs))]

    async def dependants_resolve(
        self, ended: Sequence[UUID] | None, limit: int
    ) -> list[Transition]:
        """Resolve WAITING jobs (dependants_resolve in sql/dependencies.sql): those that wait
        for a job of `ended`, or any (`ended` None: the sweep), at most `limit`. Returns the
        moves: WAITING → PENDING (DEPENDENCIES_MET) or → DEAD_LETTERED (DEPENDENCY_FAILED).
        Each shard this server serves is resolved in turn, within the one limit."""
        moved: list[Transition] = []
        for shard in served_shards():
            if len(moved) >= limit:
                break
            rows = await self._pool.fetch(
                query("dependants_resolve"),
                None if ended is None else list(ended),
                limit - len(moved),
                shard,
            )
            moved.extend(transition_from_row(row) for row in rows)
        return moved

    async def job_insert_assigned(
        self, job: NewJob, worker_id: UUID, *, incarnation: UUID
    ) -> DirectSubmit | None:
        """Insert one job (no not_before) assigned to a worker whose stream belongs to its
        process `incarnation`, if that worker is ONLINE as that process and no job of the queue
        is waiting; else insert it PENDING. None when its id or idempotency key is taken:
        nothing was written, and jobs_insert says by whom. QueueNotFound for an unknown queue.
        (See job_insert_assigned in sql/jobs.sql.)"""
        if job.not_before is not None:
            raise ValueError("a job with a not_before is not assigned at its insert")
        try:
            row = await self._pool.fetchrow(
                query("job_insert_assigned"), *assigned_arguments(job, worker_id, incarnation)
            )
        except (asyncpg.NotNullViolationError, asyncpg.ForeignKeyViolationError):
            await self._raise_missing_queue({job.queue_name})
            raise
        if row is None:
            return None
        submitted = Submitted(row["job_id"], row["created_at"])
        if row["status"] != JobStatus.ASSIGNED.value:
            return DirectSubmit(submitted, None)
        assignment = Assignment(
            job_from_row(row), row["ttl_seconds"], row["claim_id"], False, row["trace_context"]
        )
        return DirectSubmit(submitted, assignment)

    async def _raise_missing_queue(self, names: set[str]) -> None:
        existing = {row["name"] for row in await self._pool.fetch(query("queues_existing"), names)}
        missing = sorted(names - existing)
        if missing:
            raise QueueNotFound(missing[0])

    async def job_get(self, job_id: UUID) -> Job:
        row = await self._pool.fetchrow(query("job_get"), job_id)
        if row is None:
            raise JobNotFound(job_id)
        return job_detail_from_row(row)

    async def jobs_list(
        self,
        *,
        queue_name: str | None = None,
        status: JobStatus | None = None,
        limit: int = 20,
        page_token: str = "",
    ) -> JobPage:
        """Newest first; `next_page_token` is empty on the last page."""
        after_created, after_id = decode_page_token(page_token) if page_token else (None, None)
        rows = await self._pool.fetch(
            query("jobs_list"),
            queue_name,
            None if status is None else status.value,
            after_created,
            after_id,
            limit + 1,  # one more than asked tells whether another page exists
        )
        jobs = [job_detail_from_row(row) for row in rows[:limit]]
        token = ""
        if len(rows) > limit and jobs:
            token = encode_page_token(jobs[-1].created_at, jobs[-1].job_id)
        return JobPage(jobs=jobs, next_page_token=token)

    # --- operator actions -------------------------------------------------------------------

    async def job_retry_manual(self, job_id: UUID) -> OperatorChange:
        """FAILED or DEAD_LETTERED → PENDING (MANUAL_RETRY) with retry_count 0. Returns the
        job and the status it left."""
        return await self._operator_action("job_retry_manual", job_id, "retry")

    async def _operator_action(self, name: str, job_id: UUID, action: str) -> OperatorChange:
        row = await self._pool.fetchrow(query(name), job_id)
        if row is not None:
            unannounced = bool(row.get("unannounced", False))  # only job_cancel says
            return OperatorChange(
                job_from_row(row),
                JobStatus(row["from_status"]),
                unannounced,
                has_dependants=bool(row.get("has_dependants", False)),
            )
        current = await self.job_get(job_id)  # raises JobNotFound
        raise InvalidTransition(job_id, action, current.status.value)

    # --- dispatch and worker reports --------------------------------------------------------

    async def jobs_claim(
        self, worker_id: UUID, queues: Sequence[str], limit: int, *, incarnation: UUID
    ) -> list[Assignment]:
        """Claim up to `limit` eligible jobs of `queues` for a worker whose stream belongs to
        its process `incarnation`, in claim order; nothing when that worker is not ONLINE or
        another process registered under its id since. Each claim gets a new random claim
        id."""
        if limit <= 0 or not queues:
            return []
        # The claim must walk ready_jobs_claim_idx in order and stop at its limit. Queue
        # tables churn faster than statistics follow, and with a stale, tiny row estimate the
        # planner prefers a bitmap scan of every pending job plus a sort (measured 8 ms instead of
        # 0.4 ms per claim with 20,000 pending). Sorting is what that plan needs and the
        # ordered index scan does not, so claims run with sorting discouraged. A claim commits
        # without waiting for its WAL flush (a lost claim only re-runs the job).
        # One statement per shard this server serves (one today), each claiming what the
        # shards before it left of the limit: every claim touches one shard (V25).
        claimed: list[Assignment] = []
        for shard in served_shards():
            if len(claimed) >= limit:
                break
            args = (worker_id, list(queues), limit - len(claimed), incarnation, shard)
            if self._claim_pool is not None:
                rows = await self._claim_pool.fetch(query("jobs_claim"), *args)
            else:
                async with self._pool.acquire() as conn, conn.transaction():
                    # The settings of the claim pool's sessions (see create_claim_pool).
                    await conn.execute(settings_statement(CLAIM_SESSION_SETTINGS, local=True))
                    rows = await conn.fetch(query("jobs_claim"), *args)
            claimed.extend(
                Assignment(
                    job_from_row(row),
                    row["ttl_seconds"],
                    row["claim_id"],
                    row["unannounced"],
                    row["trace_context"],
                )
                for row in rows
            )
        return claimed

    async def jobs_claim_limited(
        self, worker_id: UUID, queue: str, limit: int, *, incarnation: UUID
    ) -> LimitedClaim:
        """jobs_claim for one paused or limited queue: up to `limit` of its jobs within its
        concurrency and rate limits, claimed under its row lock (sql/queue_flow.sql)."""
        pool = self._claim_pool or self._pool
        claimed: list[Assignment] = []
        retry_after_s: float | None = None
        for shard in served_shards():  # one today; each shard's claim under the queue's lock
            if len(claimed) >= limit:
                break
            got = await claim_limited(
                pool,
                worker_id,
                queue,
                limit - len(claimed),
                incarnation=incarnation,
                settings_in_session=self._claim_pool is not None,
                shard=shard,
            )
            claimed.extend(got.assignments)
            if got.retry_after_s is not None:
                retry_after_s = min(retry_after_s or got.retry_after_s, got.retry_after_s)
        return LimitedClaim(claimed, retry_after_s)

    async def jobs_start(self, attempts: Sequence[AttemptRef]) -> ReportOutcome:
        """Start acknowledgements: ASSIGNED → RUNNING for claims still current."""
        if not attempts:
            return ReportOutcome([], [])
        rows: list[asyncpg.Record] = []
        for shard, group in by_shard(attempts):  # one statement per shard (one, today)
            rows += await self._pool.fetch(query("jobs_start"), *attempt_columns(group), shard)
        results = await self._results(attempts, rows, Reason.STARTED)
        return ReportOutcome(results, report_transitions(rows))

    async def jobs_complete(self, successes: Sequence[Success]) -> ReportOutcome:
        """Successful results for attempts still current: RUNNING → DONE, or ASSIGNED →
        RUNNING → DONE for a result that carries its attempt's start (no acknowledgement came
        before it; see the jobs_complete statement)."""
        if not successes:
            return ReportOutcome([], [])
        refs = [AttemptRef(s.job_id, s.attempt, s.worker_id, s.claim_id) for s in successes]
        rows: list[asyncpg.Record] = []
        for shard, group in split_by_shard(successes, lambda s: s.job_id):
            rows += await self._pool.fetch(
                query("jobs_complete"),
                *attempt_columns(
                    [AttemptRef(s.job_id, s.attempt, s.worker_id, s.claim_id) for s in group]
                ),
                [s.result for s in group],
                shard,
            )
        transitions: list[Transition] = []
        for row in rows:  # a row that was ASSIGNED stands for its start and its completion
            if row["from_status"] == JobStatus.ASSIGNED.value:
                transitions.append(
                    transition_from_row(row, to_status=JobStatus.RUNNING, reason=Reason.STARTED)
                )
                transitions.append(transition_from_row(row, from_status=JobStatus.RUNNING))
            else:
                transitions.append(transition_from_row(row))
        return ReportOutcome(await self._results(refs, rows, Reason.COMPLETED), transitions)

    async def jobs_fail(
        self,
        failures: Sequence[Failure],
        policy: RetryPolicy,
        now: datetime | None = None,
    ) -> ReportOutcome:
        """Failed attempts: FAILED, then PENDING with backoff or DEAD_LETTERED (retry policy;
        at once, reason REFUSED, for attempts the worker refused).

        A worker's own report (reason FAILED) applies to RUNNING attempts; a refusal to
        ASSIGNED or RUNNING ones (a worker does not acknowledge the start of a job it refuses:
        it never started). Failures of one call share their reason and their `refused` flag.
        (Interruptions — a lost or restarted worker, an assignment timeout — are not failures:
        see `jobs_interrupt`.)
        """
        if not failures:
            return ReportOutcome([], [])
        kinds = {(f.reason, f.refused) for f in failures}
        if len(kinds) != 1:
            raise ValueError("failures of one call must share their reason and refused flag")
        reason, refused = kinds.pop()
        from_statuses = (
            [JobStatus.RUNNING.value]
            if reason is Reason.FAILED and not refused
            else [JobStatus.ASSIGNED.value, JobStatus.RUNNING.value]
        )
        refs = [AttemptRef(f.job_id, f.attempt, f.worker_id, f.claim_id) for f in failures]
        errors = {(f.job_id, f.attempt): f.error_message for f in failures}
        rows: list[asyncpg.Record] = []
        async with self._pool.acquire() as conn, conn.transaction():
            for shard, group in by_shard(refs):  # one shard at a time (one, today)
                rows += await self._fail_on_shard(
                    conn, shard, group, from_statuses, errors, policy, now, refused, reason
                )
        results = await self._results(refs, rows, Reason.FAILED)
        return ReportOutcome(results, report_transitions(rows, first_reason=reason))

    async def _fail_on_shard(
        self,
        conn: Conn,
        shard: int,
        refs: Sequence[AttemptRef],
        from_statuses: list[str],
        errors: dict[tuple[UUID, int], str],
        policy: RetryPolicy,
        now: datetime | None,
        refused: bool,
        reason: Reason,
    ) -> list[asyncpg.Record]:
        """jobs_fail's two statements for the claims of one shard, in the caller's
        transaction: the rows of the failures applied."""
        locked = await conn.fetch(
            query("jobs_lock_for_failure"), *attempt_columns(refs), from_statuses, shard
        )
        if not locked:
            return []
        # The policy decides in Python (one home, unit-tested with an injected clock and
        # random source); `now` defaults to the database clock.
        moment = now or await conn.fetchval(query("db_now"))
        decisions = [
            decide_after_failure(
                row["retry_count"],
                row["max_retries"],
                moment,
                policy,
                refused=refused,
                cancel_requested=row["cancel_requested_at"] is not None,
            )
            for row in locked
        ]
        # The locked rows' own tokens and statuses go back in: the update is guarded by
        # them, so it applies exactly to the claims locked above, in the status the
        # policy decided for.
        held = [
            AttemptRef(row["job_id"], row["attempt"], row["worker_id"], row["claim_id"])
            for row in locked
        ]
        return await conn.fetch(
            query("jobs_apply_failure"),
            *attempt_columns(held),
            [row["status"] for row in locked],
            [errors[(row["job_id"], row["attempt"])] for row in locked],
            [d.retry_count for d in decisions],
            [d.to_status.value for d in decisions],
            [d.reason.value for d in decisions],
            [d.not_before for d in decisions],
            reason.value,
            shard,
        )

    async def jobs_release(self, attempts: Sequence[AttemptRef], reason: Reason) -> ReportOutcome:
        """ASSIGNED/RUNNING → PENDING without consuming a retry or counting an interruption
        (WORKER_SHUTDOWN, DELIVERY_FAILED)."""
        if not attempts:
            return ReportOutcome([], [])
        rows: list[asyncpg.Record] = []
        for shard, group in by_shard(attempts):  # one statement per shard (one, today)
            rows += await self._pool.fetch(
                query("jobs_release"), *attempt_columns(group), reason.value, shard
            )
        return ReportOutcome(await self._results(attempts, rows, reason), report_transitions(rows))

    async def jobs_interrupt(
        self, attempts: Sequence[AttemptRef], reason: Reason, detail: str
    ) -> list[Transition]:
        """Deliveries that ended without a result from the worker (`reason`: WORKER_LOST,
        WORKER_RESTARTED or ASSIGNMENT_TIMEOUT; `detail` says what happened): ASSIGNED/RUNNING
        → PENDING at once with interruptions + 1 and no retry used, or DEAD_LETTERED (POISON)
        for a job interrupted more often than its queue's max_interruptions. Fenced like the
        reports: claims no longer current are left alone."""
        if not attempts:
            return []
        async with self._pool.acquire() as conn:
            return await interrupt_claims(
                conn, attempts, reason, detail, (JobStatus.ASSIGNED, JobStatus.RUNNING)
            )

    async def jobs_count_by_status(self) -> dict[JobStatus, int]:
        rows = await self._pool.fetch(query("jobs_count_by_status"))
        counts = dict.fromkeys(JobStatus, 0)
        counts.update({JobStatus(row["status"]): row["n"] for row in rows})
        return counts

    async def jobs_active_depth(self) -> ActiveDepth:
        rows = await self._pool.fetch(query("jobs_active_depth"))
        return ActiveDepth(
            counts={(row["queue_name"], JobStatus(row["status"])): row["n"] for row in rows},
            oldest_pending_s={
                row["queue_name"]: float(row["oldest_s"])
                for row in rows
                if row["oldest_s"] is not None
            },
        )

    async def jobs_held_by_worker(self, worker_id: UUID) -> list[AttemptRef]:
        async with self._pool.acquire() as conn:
            return await held_by_worker(conn, worker_id)

    async def _results(
        self,
        attempts: Sequence[AttemptRef],
        rows: Sequence[asyncpg.Record],
        duplicate_reason: Reason,
    ) -> list[AttemptResult]:
        """Per attempt: applied now, an exact duplicate of a report applied before (accepted,
        changes nothing), or stale (rejected). `duplicate_reason` is the event an earlier
        identical report left behind."""
        applied = {(row["job_id"], row["attempt"]) for row in rows}
        missed = [a for a in attempts if (a.job_id, a.attempt) not in applied]
        duplicates: set[tuple[UUID, int]] = set()
        if missed:
            earlier: list[asyncpg.Record] = []
            for shard, group in by_shard(missed):
                earlier += await self._pool.fetch(
                    query("jobs_attempt_outcomes"), *attempt_columns(group), shard
                )
            duplicates = {
                (r["job_id"], r["attempt"])
                for r in earlier
                if r["reason"] == duplicate_reason
                # A repeated start is only "yours, go on" while the claim is still current
                # and yours: a superseded one must be refused so the worker stops running it.
                and (
                    duplicate_reason is not Reason.STARTED
                    or (
                        r["current_attempt"] == r["attempt"]
                        and r["current_worker"] == r["worker_id"]
                        and r["current_claim"]
                    )
                )
            }
        results = []
        for a in attempts:
            key = (a.job_id, a.attempt)
            if key in applied:
                results.append(AttemptResult(a.job_id, a.attempt, True))
            elif key in duplicates:
                results.append(AttemptResult(a.job_id, a.attempt, True, "duplicate"))
            else:
                results.append(AttemptResult(a.job_id, a.attempt, False, _STALE))
        return results


_STALE = "attempt is no longer current or not held by this worker under this claim"
