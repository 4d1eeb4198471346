"""Claim statements shared by the job, worker and maintenance stores, which run them on a
connection of their own transaction: the claims a worker holds, interrupting and releasing
claims, and the (job, attempt, worker, claim) arrays every batch statement unnests.

Every statement here names one shard (V25, jobq.domain.shards): a batch of claims is split by
the shard of its job ids and runs one statement per shard present (one, while there is one
shard), and a question about a worker is asked of each shard this server serves."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from jobq.domain.records import AttemptRef, Transition
from jobq.domain.shards import served_shards, split_by_shard
from jobq.domain.states import JobStatus, Reason
from jobq.storage.postgres.rows import transition_from_row
from jobq.storage.queries import query

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
"""A connection, or one acquired from a pool."""


async def held_by_worker(conn: Conn, worker_id: UUID) -> list[AttemptRef]:
    """The claims (ASSIGNED or RUNNING) a worker holds, as their fencing tokens, on every
    shard this server serves."""
    held: list[AttemptRef] = []
    for shard in served_shards():
        rows = await conn.fetch(query("jobs_held_by_worker"), worker_id, shard)
        held.extend(
            AttemptRef(row["job_id"], row["attempt"], worker_id, row["claim_id"]) for row in rows
        )
    return held


async def interrupt_claims(
    conn: Conn,
    attempts: Sequence[AttemptRef],
    reason: Reason,
    detail: str,
    from_statuses: Sequence[JobStatus],
) -> list[Transition]:
    """Run jobs_interrupt on `conn` (see PgJobStore.jobs_interrupt) for the claims in one of
    `from_statuses`; returns the applied transitions. A poison job that was RUNNING stands for
    two: RUNNING → FAILED (`reason`) → DEAD_LETTERED (POISON)."""
    if not reason.is_interruption:
        raise ValueError(f"{reason} is not an interruption")
    if not attempts:
        return []
    rows: list[asyncpg.Record] = []
    for shard, group in by_shard(attempts):
        rows += await conn.fetch(
            query("jobs_interrupt"),
            *attempt_columns(group),
            reason.value,
            detail,
            [status.value for status in from_statuses],
            shard,
        )
    transitions: list[Transition] = []
    for row in rows:
        if row["reason"] == Reason.POISON.value and row["from_status"] == JobStatus.RUNNING.value:
            transitions.append(transition_from_row(row, to_status=JobStatus.FAILED, reason=reason))
            transitions.append(transition_from_row(row, from_status=JobStatus.FAILED))
        else:
            transitions.append(transition_from_row(row))
    return transitions


async def release_claims(
    conn: Conn, attempts: Sequence[AttemptRef], reason: Reason
) -> list[Transition]:
    """Run jobs_release on `conn` (see PgJobStore.jobs_release); returns the transitions."""
    if not attempts:
        return []
    rows: list[asyncpg.Record] = []
    for shard, group in by_shard(attempts):
        rows += await conn.fetch(
            query("jobs_release"), *attempt_columns(group), reason.value, shard
        )
    return report_transitions(rows)


def by_shard(attempts: Sequence[AttemptRef]) -> list[tuple[int, list[AttemptRef]]]:
    """Claims grouped by the shard of their jobs, in shard order: one statement each."""
    return split_by_shard(attempts, lambda a: a.job_id)


def report_transitions(
    rows: Sequence[asyncpg.Record], first_reason: Reason | None = None
) -> list[Transition]:
    """The applied state changes of a report statement's rows; with `first_reason`, each
    failure row stands for two: X → FAILED (that reason) → the policy's next state."""
    if first_reason is None:
        return [transition_from_row(row) for row in rows]
    transitions: list[Transition] = []
    for row in rows:
        transitions.append(
            transition_from_row(row, to_status=JobStatus.FAILED, reason=first_reason)
        )
        transitions.append(transition_from_row(row, from_status=JobStatus.FAILED))
    return transitions


def attempt_columns(
    attempts: Sequence[AttemptRef],
) -> tuple[list[UUID], list[int], list[UUID], list[UUID | None]]:
    """The (job ids, attempts, worker ids, claim ids) arrays the batch statements unnest."""
    return (
        [a.job_id for a in attempts],
        [a.attempt for a in attempts],
        [a.worker_id for a in attempts],
        [a.claim_id for a in attempts],
    )
