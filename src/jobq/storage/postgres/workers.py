"""PostgreSQL WorkerStore.

A worker id may be registered by one process after another (a restart under a stable id): each
process is an incarnation of the worker, issued at its first registration. Registering a new
incarnation and deregistering the current one lock the worker's row and release the jobs it
holds in the same transaction (see `sql/workers.sql`)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from uuid import UUID

import asyncpg

from jobq.domain.errors import FailedPrecondition, WorkerNotFound, WorkerSuperseded
from jobq.domain.records import Registration, Transition, Worker
from jobq.domain.shards import shard_of
from jobq.domain.states import JobStatus, Reason, WorkerStatus
from jobq.storage.postgres.claims import held_by_worker, interrupt_claims, release_claims
from jobq.storage.postgres.rows import worker_from_row
from jobq.storage.queries import query

RESTART_DETAIL = "a new process registered under the worker's id"

ANY_WORKER_STATUS: tuple[WorkerStatus, ...] = tuple(WorkerStatus)
"""worker_set_status's default guard: callers that decided under the worker's row lock, and
tests setting a worker up."""


class PgWorkerStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def worker_register(
        self,
        worker_id: UUID,
        hostname: str,
        concurrency: int,
        queues: Sequence[str],
        incarnation: UUID | None = None,
    ) -> Registration:
        """Register a worker process: ONLINE, heartbeat now.

        Without `incarnation` (a process's first registration) a new one is issued; if the
        worker id held jobs — left by a previous process, dead or superseded — they are
        interrupted (WORKER_RESTARTED: back to PENDING, or POISON) in the same transaction.
        With the incarnation the process was given, it keeps its jobs (a reconnect); a row
        without one (registered before incarnations existed, or lost with a database restore)
        takes it. WorkerSuperseded, changing nothing, when the row holds another."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await conn.fetchrow(query("worker_lock"), worker_id)
            if incarnation is None:
                incarnation = uuid.uuid4()
                restarted = current is not None
            elif current is not None and current["incarnation"] not in (None, incarnation):
                raise WorkerSuperseded(worker_id)
            else:
                restarted = False
            row = await conn.fetchrow(
                query("worker_register"),
                worker_id,
                hostname,
                concurrency,
                list(queues),
                incarnation,
                shard_of(worker_id),  # its home shard (V25)
            )
            assert row is not None

            released: list[Transition] = []
            if restarted:
                released = await interrupt_claims(
                    conn,
                    await held_by_worker(conn, worker_id),
                    Reason.WORKER_RESTARTED,
                    RESTART_DETAIL,
                    (JobStatus.ASSIGNED, JobStatus.RUNNING),
                )
        return Registration(worker_from_row(row), incarnation, restarted, released)

    async def worker_heartbeat(
        self, worker_id: UUID, incarnation: UUID, active_job_count: int
    ) -> Worker:
        """Record a heartbeat of the worker's current process. WorkerSuperseded, changing
        nothing, for another incarnation; WorkerNotFound for unknown workers and for OFFLINE
        ones, which must register again. (The lookup that tells them apart runs only when the
        heartbeat was refused.)"""
        row = await self._pool.fetchrow(
            query("worker_heartbeat"), worker_id, active_job_count, incarnation
        )
        if row is not None:
            return worker_from_row(row)
        current = await self.worker_get(worker_id)  # WorkerNotFound
        if current.incarnation not in (None, incarnation):
            raise WorkerSuperseded(worker_id)
        raise WorkerNotFound(worker_id)  # OFFLINE, or no incarnation stored: register again

    async def worker_deregister(
        self, worker_id: UUID, incarnation: UUID
    ) -> tuple[Worker, list[Transition]]:
        """OFFLINE, and the jobs the worker holds back to PENDING (WORKER_SHUTDOWN: neither a
        retry nor an interruption), in one transaction that holds the worker's row lock, so a
        process registering under the id meanwhile cannot have its new jobs released.
        WorkerNotFound for unknown workers; WorkerSuperseded, changing nothing, when
        `incarnation` is not the current one."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await conn.fetchrow(query("worker_lock"), worker_id)
            if current is None:
                raise WorkerNotFound(worker_id)
            if current["incarnation"] != incarnation:
                raise WorkerSuperseded(worker_id)
            # From any status: the incarnation check above decided, under the row lock (a
            # lost worker's process may still deregister, and its jobs are released).
            row = await conn.fetchrow(
                query("worker_set_status"),
                worker_id,
                WorkerStatus.OFFLINE.value,
                [s.value for s in ANY_WORKER_STATUS],
            )
            assert row is not None
            released = await release_claims(
                conn, await held_by_worker(conn, worker_id), Reason.WORKER_SHUTDOWN
            )
        return worker_from_row(row), released

    async def worker_get(self, worker_id: UUID) -> Worker:
        row = await self._pool.fetchrow(query("worker_get"), worker_id)
        if row is None:
            raise WorkerNotFound(worker_id)
        return worker_from_row(row)

    async def worker_list(self, status: WorkerStatus | None = None) -> list[Worker]:
        rows = await self._pool.fetch(query("worker_list"), None if status is None else status)
        return [worker_from_row(row) for row in rows]

    async def worker_set_status(
        self,
        worker_id: UUID,
        status: WorkerStatus,
        from_statuses: Collection[WorkerStatus] = ANY_WORKER_STATUS,
    ) -> tuple[Worker, WorkerStatus]:
        """Move a worker to `status` if it is in one of `from_statuses` now, in one guarded
        statement; returns the worker and the status it had. WorkerNotFound for unknown
        workers; FailedPrecondition naming the status, changing nothing, for one in another
        status. (The lookup that tells the two apart runs only when the guard refused.)"""
        row = await self._pool.fetchrow(
            query("worker_set_status"),
            worker_id,
            status.value,
            [s.value for s in from_statuses],
        )
        if row is not None:
            return worker_from_row(row), WorkerStatus(row["previous_status"])
        current = await self.worker_get(worker_id)  # WorkerNotFound
        raise FailedPrecondition(f"worker {worker_id} is {current.status.value}")

    async def worker_request_shutdown(self, worker_id: UUID) -> Worker:
        """Mark a live worker DRAINING with a pending SHUTDOWN command; WorkerNotFound when
        unknown or OFFLINE."""
        row = await self._pool.fetchrow(query("worker_request_shutdown"), worker_id)
        if row is None:
            raise WorkerNotFound(worker_id)
        return worker_from_row(row)

    async def worker_counts(self) -> dict[WorkerStatus, int]:
        rows = await self._pool.fetch(query("worker_counts"))
        counts = dict.fromkeys(WorkerStatus, 0)
        counts.update({WorkerStatus(row["status"]): row["n"] for row in rows})
        return counts

    async def workers_online_by_queue(self) -> dict[str, int]:
        rows = await self._pool.fetch(query("workers_online_by_queue"))
        return {row["queue_name"]: row["n"] for row in rows}
