"""The statement of one submit (`jobs_insert` in sql/jobs.sql), whichever connection runs it.

PgJobStore runs it on its pool; an application's transactional enqueue
(`caller_transaction.py`) runs it on the application's own connection, asyncpg or psycopg.
Both send the same arguments and read the rows the same way, written once, here, with no
driver in sight: the drivers only execute what this plans.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from jobq.domain.errors import Unavailable
from jobq.domain.records import NewJob, Submitted


class InsertBatch:
    """One jobs_insert statement: its arguments, and each job's outcome from its rows.

    Repeats of a key within the batch are not sent (the statement may affect a row once): each
    key's first job is sent (its "leader"), and the later ones get its outcome as `existing`.
    One statement settles every job sent (see jobs_insert: ON CONFLICT ... DO UPDATE returns
    the holder of a held key, even one committed while the statement waited for it).

        batch = InsertBatch(jobs)
        rows = <execute query("jobs_insert") with *batch.arguments(notify)>
        return batch.results(rows)
    """

    def __init__(self, jobs: Sequence[NewJob]) -> None:
        self._jobs = jobs
        self._leader: dict[str, NewJob] = {}
        self._sent: list[NewJob] = []
        for job in jobs:
            key = job.idempotency_key
            if key is None or key not in self._leader:
                self._sent.append(job)
                if key is not None:
                    self._leader[key] = job
        self.keyed = bool(self._leader)

    def arguments(self, notify: bool, *, outside_server: bool = False) -> tuple[Any, ...]:
        """The parameters ($1..$9) of the statement. $7 is NULL when no job has a key.
        `outside_server` ($9): written by an application's transaction, not by jq-server, so
        the jobs are left in enqueued_jobs for a server to announce."""
        jobs = self._sent
        keys = [job.idempotency_key for job in jobs] if self.keyed else None
        return (
            [job.job_id for job in jobs],
            [job.queue_name for job in jobs],
            [job.payload for job in jobs],
            [job.priority for job in jobs],
            [job.max_retries for job in jobs],
            [job.not_before for job in jobs],
            keys,
            notify,
            outside_server,
        )

    def results(self, rows: Iterable[Iterable[Any]]) -> list[Submitted]:
        """One Submitted per job given, in order, from the statement's rows (job_id,
        created_at, held_key): a job inserted, or (`existing`) the holder of its key."""
        inserted: dict[Any, Submitted] = {}
        held: dict[str, Submitted] = {}
        for job_id, created_at, held_key in rows:
            if held_key is None:
                inserted[job_id] = Submitted(job_id, created_at)
            else:
                held[held_key] = Submitted(job_id, created_at, existing=True)
        results = []
        for job in self._jobs:
            key = job.idempotency_key
            leader = job if key is None else self._leader[key]
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
