"""The shard of a job (issue 21, must-show 4): carried in its id, so that every statement about
a job can name the one shard it lives on without a lookup.

A shard is a logical partition of the hot tables (docs/scaling.md, section 3): each row of
jobs, its events, side-table rows, dependency edges and outbox rows carries the `shard` of its
job, and every hot statement filters by one shard value. A distributed engine (Citus, or
PostgreSQL cells) then sends each statement whole to the node holding that shard.

The shard of an id is the 12 `rand_a` bits of the UUID (bytes 6-7, below the version nibble:
`((b[6] & 0x0F) << 8) | b[7]`) modulo SHARD_COUNT. In a UUIDv7 from `jobq.domain.ids` those
bits are its per-millisecond counter, so consecutive ids take the shards in turn; in a v4 id
they are random. Any id a client chooses maps to a shard by the same rule, so every id is
accepted. SHARD_COUNT divides 4096, so that random bits spread evenly over the shards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar
from uuid import UUID

SHARD_COUNT = 1
"""How many logical shards the hot tables are split into. One today: every row's shard is 0
and every statement names shard 0, so nothing changes for a single PostgreSQL. It is fixed at
installation: changing it changes the shard of existing ids, so rows written under one count
would be looked for on the wrong shard under another. Raising it means rewriting every row's
shard (`shard_of` of its job id) in one maintenance window, or, on Citus, choosing it before
the first job (64 or 256: many logical shards per node, so that nodes are added by moving
whole shards). It must divide 4096."""

T = TypeVar("T")


def served_shards() -> tuple[int, ...]:
    """The shards this server claims from and sweeps (its claims, recovery monitors, TTL
    reaper, outbox announcer, dependency sweep): one statement per shard, in shard order. Every
    server serves all of them today; with several shards on several nodes, each dispatcher
    would lease a set of them (docs/scaling.md, section 3, "Claims")."""
    return tuple(range(SHARD_COUNT))


def every_shard() -> tuple[int, ...]:
    """Every shard, whichever server serves it: for maintenance of whole tables (a day's
    partition of jobs holds jobs of every shard, and dropping it must forget each shard's keys
    and ticks), which one replica does for all under the history maintainer's lease. Not
    served_shards(): that set is per server once shards are leased."""
    return tuple(range(SHARD_COUNT))


def shard_of(job_id: UUID, shard_count: int | None = None) -> int:
    """The shard of a job (or worker) id: its 12 rand_a bits modulo `shard_count` (None:
    SHARD_COUNT, read when called, so that a test can run with several shards)."""
    if shard_count is None:
        shard_count = SHARD_COUNT
    if shard_count < 1 or 4096 % shard_count:
        raise ValueError(f"the shard count must divide 4096, not {shard_count}")
    b = job_id.bytes
    return (((b[6] & 0x0F) << 8) | b[7]) % shard_count


def split_by_shard(
    items: Iterable[T], job_id: Callable[[T], UUID], shard_count: int | None = None
) -> list[tuple[int, list[T]]]:
    """Items grouped by the shard of their job id, in ascending shard order (so that two
    batches lock their shards' rows in one order), each group in input order: one statement per
    shard present (docs/scaling.md, F2). With one shard, one group of everything."""
    if (SHARD_COUNT if shard_count is None else shard_count) == 1:
        # today's case, on every report batch: no per-item work (0.65 µs an item otherwise)
        listed = list(items)
        return [(0, listed)] if listed else []
    groups: dict[int, list[T]] = {}

    for item in items:
        groups.setdefault(shard_of(job_id(item), shard_count), []).append(item)
    return sorted(groups.items())
