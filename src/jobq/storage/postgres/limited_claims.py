"""The limited claim: jobs of a paused or limited queue (issue 18), claimed under its lock.

See sql/queue_flow.sql for why it is four statements in one transaction. The choice itself is
jobq.domain.flow_limits, pure and tested alone; this module only reads and writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from jobq.domain.flow_limits import Candidate, FlowLimits, FlowState, budget, choose, scan_limit
from jobq.domain.records import Assignment, LimitedClaim
from jobq.storage.pool import CLAIM_SESSION_SETTINGS, settings_statement
from jobq.storage.postgres.rows import flow_from_row, job_from_row
from jobq.storage.queries import query


async def claim_limited(
    pool: asyncpg.Pool,
    worker_id: UUID,
    queue: str,
    want: int,
    *,
    incarnation: UUID,
    settings_in_session: bool,
    shard: int,
) -> LimitedClaim:
    """Claim up to `want` jobs of `queue` for the worker within the queue's limits; nothing
    when it is paused, unknown, or at its limits (then `retry_at` says when a rate frees a
    start, if one will). `settings_in_session`: the pool's sessions already have the claim
    settings (the claim pool); otherwise they are set for this transaction. The counts,
    candidates and claims are those of `shard` (V25): the queue's own while there is one shard
    (docs/scaling.md, F10: a limited queue's jobs on one home shard)."""
    if want <= 0:
        return LimitedClaim([])
    async with pool.acquire() as conn, conn.transaction():
        if not settings_in_session:
            await conn.execute(settings_statement(CLAIM_SESSION_SETTINGS, local=True))
        row = await conn.fetchrow(query("queue_flow_lock"), queue)
        if row is None:
            return LimitedClaim([])
        limits = flow_from_row(row)
        if limits.paused:
            return LimitedClaim([])
        state = _state(
            await conn.fetch(
                query("queue_flow_state"),
                queue,
                limits.rate.period_ms if limits.rate else None,
                limits.key_rate.period_ms if limits.key_rate else None,
                worker_id,
                shard,
            )
        )
        allowed = budget(limits, state, want)
        retry_after_s = (
            None
            if allowed.retry_at is None
            else max((allowed.retry_at - state.at).total_seconds(), 0.0)
        )
        if allowed.total <= 0:
            return LimitedClaim([], retry_after_s)
        candidates = [
            Candidate(r["job_id"], r["concurrency_key"], r["suspect"])
            for r in await conn.fetch(
                query("queue_flow_candidates"),
                queue,
                state.at,
                sorted(allowed.full_keys),
                scan_limit(want),
                shard,
            )
        ]
        chosen = choose(limits, state, candidates, allowed.total)
        if not chosen:
            return LimitedClaim([], retry_after_s)
        rated = limits.rate is not None or limits.key_rate is not None
        rows = await conn.fetch(
            query("jobs_claim_chosen"),
            worker_id,
            chosen,
            incarnation,
            rated,
            queue,
            _longest_period_ms(limits),
            shard,
        )

        assignments = [
            Assignment(
                job_from_row(r),
                r["ttl_seconds"],
                r["claim_id"],
                r["unannounced"],
                r["trace_context"],
            )
            for r in rows
        ]
        # Held back by a rate: the caller looks again when the window frees a start.
        return LimitedClaim(assignments, retry_after_s if len(assignments) < want else None)


def _state(rows: Sequence[asyncpg.Record]) -> FlowState:
    at: datetime | None = None
    held: dict[str | None, int] = {}
    starts, oldest = 0, None
    key_starts: dict[str, tuple[int, datetime]] = {}
    holds_suspect = False
    for r in rows:
        kind = r["kind"]
        if kind == "clock":
            at = r["oldest"]
        elif kind == "held":
            held[r["key"]] = r["n"]
        elif kind == "started":
            starts, oldest = r["n"], r["oldest"]
        elif kind == "key_started":
            key_starts[r["key"]] = (r["n"], r["oldest"])
        elif kind == "suspect_held":
            holds_suspect = r["n"] > 0
    assert at is not None, "queue_flow_state always returns the clock"
    return FlowState(at, held, starts, oldest, key_starts, holds_suspect)


def _longest_period_ms(limits: FlowLimits) -> int:
    periods = [r.period_ms for r in (limits.rate, limits.key_rate) if r is not None]
    return max(periods, default=0)
