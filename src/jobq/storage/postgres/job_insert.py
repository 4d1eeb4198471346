"""The statements of one submit (`jobs_insert` in sql/jobs.sql), whichever connection runs them.

PgJobStore runs them on its pool; an application's transactional enqueue
(`caller_transaction.py`) runs them on the application's own connection, asyncpg or psycopg.
Both send the same arguments and read the rows the same way, so the idempotency-key rounds (a
statement may skip a job for a holder it cannot see, and is run again for it) are written
once, here, with no driver in sight: the drivers only execute what this plans.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from jobq.domain.errors import Unavailable
from jobq.domain.records import NewJob, Submitted

KEY_ROUNDS = 5
"""Statements a batch with idempotency keys may take (see InsertRounds)."""


class InsertRounds:
    """One jobs_insert call: the statements it sends and what they told.

    Repeats of a key within the batch are not sent: each key's first job is (its "leader"),
    and the later ones get its outcome as `existing`. A statement that skips a job because a
    concurrent transaction committed its key while the statement waited cannot see that holder
    (its snapshot is older), so the job comes back unresolved; the next statement sends only
    those, and READ COMMITTED gives it a snapshot that sees the holder (or, were the holder
    deleted since, inserts the job). Each round needs another transaction to commit the same
    key meanwhile, so KEY_ROUNDS bounds them.

        rounds = InsertRounds(jobs)
        for _ in range(KEY_ROUNDS):
            rows = <execute query("jobs_insert") with *rounds.arguments(notify)>
            if rounds.record(rows):
                return rounds.results()
        raise rounds.contended()
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
        self._outcome: dict[UUID, Submitted] = {}  # by the sent job's id
        self.keyed = bool(self._leader)
        """False when no job has a key: one statement settles everything (the hot path)."""

    def arguments(self, notify: bool, *, outside_server: bool = False) -> tuple[Any, ...]:
        """The parameters ($1..$9) of the next jobs_insert statement. $7 is NULL when no job
        has a key, so the statement skips its search for holders (see sql/jobs.sql).
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

    def record(self, rows: Iterable[Iterable[Any]]) -> bool:
        """Take a statement's rows (job_id, created_at, held_key); True when every job is
        settled, False when some must be sent again."""
        inserted: dict[UUID, datetime] = {}
        held: dict[str, Submitted] = {}
        for job_id, created_at, held_key in rows:
            if held_key is None:
                inserted[job_id] = created_at
            else:
                held[held_key] = Submitted(job_id, created_at, existing=True)
        unresolved = []
        for job in self._sent:
            if job.job_id in inserted:
                self._outcome[job.job_id] = Submitted(job.job_id, inserted[job.job_id])
            elif job.idempotency_key is not None and job.idempotency_key in held:
                self._outcome[job.job_id] = held[job.idempotency_key]
            else:
                unresolved.append(job)
        self._sent = unresolved
        return not unresolved

    def contended(self) -> Unavailable:
        """The error when KEY_ROUNDS statements left a job unresolved."""
        return Unavailable(
            f"idempotency key {self._sent[0].idempotency_key!r} is being submitted by others"
            " over and over; try again"
        )

    def results(self) -> list[Submitted]:
        """One Submitted per job given, in order (after `record` returned True)."""
        results = []
        for job in self._jobs:
            key = job.idempotency_key
            leader = job if key is None else self._leader[key]
            outcome = self._outcome[leader.job_id]
            if leader is not job:
                outcome = Submitted(outcome.job_id, outcome.created_at, existing=True)
            results.append(outcome)
        return results
