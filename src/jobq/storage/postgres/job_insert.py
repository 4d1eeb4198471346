"""The statement of one submit (`jobs_insert` in sql/jobs.sql), whichever connection runs it.

PgJobStore runs it on its pool; an application's transactional enqueue
(`caller_transaction.py`) runs it on the application's own connection, asyncpg or psycopg.
Both send the same arguments and read the rows the same way, written once, here, with no
driver in sight: the drivers only execute what this plans.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from jobq.domain.errors import Unavailable
from jobq.domain.records import NewJob, Submitted
from jobq.domain.shards import shard_of, split_by_shard


class InsertBatch:
    """One submit's statements: their arguments, and each job's outcome from their rows.

    Jobs with an idempotency key go to `jobs_insert` (the key arbitrates); jobs whose clients
    chose their ids and gave no key go to `jobs_insert_by_id` (the id arbitrates); the server's
    own plain jobs join the by-id statement when it is the only one, else the keyed one. A batch
    with both kinds runs both statements in one transaction.

    Repeats within the batch are not sent (a statement may affect a row once): each key's, and
    each client id's, first job is sent (its "leader"), and the later ones get its outcome as
    `existing`. One statement settles every job it is sent (see jobs_insert: ON CONFLICT ... DO
    UPDATE returns the holder of a held key or id, even one committed while it waited for it).

    Each statement writes the jobs of one shard (V25, jobq.domain.shards: a job's shard is that
    of its id): `statements` splits each kind by shard, keyed ones first, each in shard order.
    Repeats are resolved over the whole batch first, so the split never separates a leader from
    its followers.

        batch = InsertBatch(jobs)
        for name, arguments in batch.statements(notify):
            <execute query(name) with *arguments: rows of jobs_insert, id_rows of the other>
        return batch.results(rows, id_rows)
    """

    def __init__(self, jobs: Sequence[NewJob]) -> None:
        self._jobs = jobs
        self._leader: dict[str, NewJob] = {}
        self._id_leader: dict[UUID, NewJob] = {}
        keyed: list[NewJob] = []
        by_id: list[NewJob] = []
        plain: list[NewJob] = []
        for job in jobs:
            key = job.idempotency_key
            if key is not None:
                if key not in self._leader:
                    self._leader[key] = job
                    keyed.append(job)
            elif job.id_from_client:
                if job.job_id not in self._id_leader:
                    self._id_leader[job.job_id] = job
                    by_id.append(job)
            else:
                plain.append(job)
        self.keyed = bool(keyed)
        if by_id and not keyed:
            self.by_key, self.by_id = [], by_id + plain
        else:
            self.by_key, self.by_id = keyed + plain, by_id

    def statements(self, notify: bool) -> list[tuple[str, tuple[Any, ...]]]:
        """(query name, parameters) of every statement jq-server runs for the batch:
        jobs_insert per shard of `by_key`, then jobs_insert_by_id per shard of `by_id`. One, as
        a rule."""
        keyed = [
            ("jobs_insert", self.arguments(notify, shard=shard))
            for shard, _ in _by_shard(self.by_key)
        ]
        by_id = [
            ("jobs_insert_by_id", self.id_arguments(notify, shard=shard))
            for shard, _ in _by_shard(self.by_id)
        ]
        return keyed + by_id

    def arguments(
        self, notify: bool, *, shard: int | None = None, outside_server: bool = False
    ) -> tuple[Any, ...]:
        """The parameters ($1..$13) of jobs_insert for the jobs of `by_key` of `shard` ($13;
        None: the one shard they are all of). $7 is NULL when no job has a key.
        `outside_server` ($9): written by an application's transaction, not by jq-server, so
        the jobs are left in enqueued_jobs for a server to announce."""
        shard, jobs = _of_shard(self.by_key, shard)
        keys = [job.idempotency_key for job in jobs] if self.keyed else None
        return (
            *_columns(jobs),
            keys,
            notify,
            outside_server,
            _correlation_ids(jobs),
            _concurrency_keys(jobs),
            _trace_contexts(jobs),
            shard,
        )

    def id_arguments(self, notify: bool, *, shard: int | None = None) -> tuple[Any, ...]:
        """The parameters ($1..$12) of jobs_insert_by_id for the jobs of `by_id` of `shard`
        ($12; None: the one shard they are all of)."""
        shard, by_id = _of_shard(self.by_id, shard)
        return (
            *_columns(by_id),
            notify,
            False,
            _correlation_ids(by_id),
            _concurrency_keys(by_id),
            _trace_contexts(by_id),
            shard,
        )

    def results(
        self, rows: Iterable[Iterable[Any]], id_rows: Iterable[Iterable[Any]] = ()
    ) -> list[Submitted]:
        """One Submitted per job given, in order, from the statements' rows: jobs_insert's
        (job_id, created_at, held_key), a job inserted or the holder of its key, and
        jobs_insert_by_id's (job_id, created_at, existing)."""
        inserted: dict[Any, Submitted] = {}
        held: dict[str, Submitted] = {}
        for job_id, created_at, held_key in rows:
            if held_key is None:
                inserted[job_id] = Submitted(job_id, created_at)
            else:
                held[held_key] = Submitted(job_id, created_at, existing=True)
        for job_id, created_at, existing in id_rows:
            inserted[job_id] = Submitted(job_id, created_at, existing=existing)
        results = []
        for job in self._jobs:
            key = job.idempotency_key
            if key is not None:
                leader = self._leader[key]
            elif job.id_from_client:
                leader = self._id_leader[job.job_id]
            else:
                leader = job
            outcome = inserted.get(leader.job_id)
            if outcome is None and key is not None:
                outcome = held.get(key)
            if outcome is None:
                # The statement answers for every job it was sent; were it ever not to, the
                # caller must not be told its job exists.
                raise Unavailable(f"the insert returned no row for job {leader.job_id}; try again")
            if leader is not job:
                outcome = Submitted(outcome.job_id, outcome.created_at, existing=True)
            results.append(outcome)
        return results


def _by_shard(jobs: Sequence[NewJob]) -> list[tuple[int, list[NewJob]]]:
    return split_by_shard(jobs, lambda job: job.job_id)


def _of_shard(jobs: Sequence[NewJob], shard: int | None) -> tuple[int, list[NewJob]]:
    """The jobs of `shard`, or, for None, the one shard all the jobs are of (ValueError when
    they are of several: such a batch is split with `statements`)."""
    groups = _by_shard(jobs)
    if shard is None:
        if not groups:  # nothing of this kind: the statement inserts nothing
            return 0, []
        if len(groups) != 1:
            raise ValueError(f"jobs of {len(groups)} shards in one statement; split the batch")
        return groups[0]
    return shard, dict(groups).get(shard, [])


def assigned_arguments(job: NewJob, worker_id: UUID, incarnation: UUID) -> tuple[Any, ...]:
    """The parameters ($1..$12) of job_insert_assigned: one job, the worker it goes to, the
    process of that worker's stream, and the job's shard."""
    return (
        job.job_id,
        job.queue_name,
        job.payload,
        job.priority,
        job.max_retries,
        job.idempotency_key,
        job.correlation_id,
        worker_id,
        incarnation,
        job.concurrency_key,
        job.trace_context,
        shard_of(job.job_id),
    )


def _columns(jobs: Sequence[NewJob]) -> tuple[list[Any], ...]:
    """$1..$6 of both statements."""
    return (
        [job.job_id for job in jobs],
        [job.queue_name for job in jobs],
        [job.payload for job in jobs],
        [job.priority for job in jobs],
        [job.max_retries for job in jobs],
        [job.not_before for job in jobs],
    )


def _correlation_ids(jobs: Sequence[NewJob]) -> list[str | None]:
    """$10 of jobs_insert, $9 of jobs_insert_by_id."""
    return [job.correlation_id for job in jobs]


def _concurrency_keys(jobs: Sequence[NewJob]) -> list[str | None]:
    """$11 of jobs_insert, $10 of jobs_insert_by_id."""
    return [job.concurrency_key for job in jobs]


def _trace_contexts(jobs: Sequence[NewJob]) -> list[str | None]:
    """$12 of jobs_insert, $11 of jobs_insert_by_id."""
    return [job.trace_context for job in jobs]
