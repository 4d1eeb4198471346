"""The dispatcher's side of flow control: a worker's paused or limited queues go to the
limited claim, one at a time and in turn, its other queues to the ordinary claim with the
slots left; a rate that held jobs back schedules a cycle. The store is a recording fake: the
statements themselves are tested on PostgreSQL (integration/storage/test_limited_claims.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from jobq.domain.records import Assignment, LimitedClaim
from jobq.server.dispatcher import Dispatcher
from jobq.server.lifecycle import Lifecycle
from jobq.server.queue_flow import QueueFlow
from jobq.server.worker_capacity import WorkerCapacity


class _Store:
    def __init__(self, retry_after_s: float | None = None) -> None:
        self.calls: list[tuple[str, Any, int]] = []
        self.retry_after_s = retry_after_s

    async def jobs_claim(
        self, worker_id: uuid.UUID, queues: Sequence[str], limit: int, *, incarnation: uuid.UUID
    ) -> list[Assignment]:
        self.calls.append(("claim", list(queues), limit))
        return []

    async def jobs_claim_limited(
        self, worker_id: uuid.UUID, queue: str, limit: int, *, incarnation: uuid.UUID
    ) -> LimitedClaim:
        self.calls.append(("limited", queue, limit))
        return LimitedClaim([], self.retry_after_s)


def _dispatcher(store: _Store, limited: set[str]) -> tuple[Dispatcher, QueueFlow, list[int]]:
    capacity = WorkerCapacity()
    capacity.attach(uuid.uuid4(), ["a", "b", "c"], concurrency=8, incarnation=uuid.uuid4())
    reads: list[int] = []

    async def read() -> set[str]:
        reads.append(1)
        return limited

    flow = QueueFlow(read)
    unused: Any = None
    dispatcher = Dispatcher(
        store,  # type: ignore[arg-type]
        capacity,
        Lifecycle(),
        unused,
        batch_size=5,
        interval_s=60,
        assignment_timeout_s=30,
        locker=unused,
        flow=flow,
    )
    return dispatcher, flow, reads


async def test_limited_queues_take_turns_and_the_others_get_the_ordinary_claim() -> None:
    store = _Store()
    dispatcher, _, _ = _dispatcher(store, {"a", "c"})
    await dispatcher.run_once()
    await dispatcher.run_once()
    assert store.calls == [
        ("limited", "a", 5),
        ("limited", "c", 5),
        ("claim", ["b"], 5),
        ("limited", "c", 5),  # the next cycle starts with the other limited queue
        ("limited", "a", 5),
        ("claim", ["b"], 5),
    ]


async def test_without_limited_queues_one_ordinary_claim_as_before() -> None:
    store = _Store()
    dispatcher, _, reads = _dispatcher(store, set())
    await dispatcher.run_once()
    await dispatcher.run_once()
    assert store.calls == [("claim", ["a", "b", "c"], 5)] * 2
    assert reads == [1]  # the cache is read once, not per cycle


async def test_a_change_of_settings_is_read_at_the_next_cycle() -> None:
    store = _Store()
    dispatcher, _, reads = _dispatcher(store, set())
    await dispatcher.run_once()
    dispatcher._wake = lambda: None  # type: ignore[method-assign]
    dispatcher.queues_changed()
    await dispatcher.run_once()
    assert reads == [1, 1]


async def test_a_rate_that_held_jobs_back_schedules_a_cycle_when_it_frees() -> None:
    store = _Store(retry_after_s=0.05)
    dispatcher, _, _ = _dispatcher(store, {"a", "b", "c"})
    woken = asyncio.Event()
    dispatcher._wake = woken.set  # type: ignore[method-assign]
    await dispatcher.run_once()
    async with asyncio.timeout(5):
        await woken.wait()
    await dispatcher.stop()


async def test_the_cache_reads_again_when_stale_or_invalidated() -> None:
    now = [0.0]
    reads: list[int] = []

    async def read() -> set[str]:
        reads.append(1)
        return {"x"}

    flow = QueueFlow(read, max_age_s=5, clock=lambda: now[0])
    assert await flow.refresh() == {"x"}
    now[0] = 4.9
    await flow.refresh()
    assert len(reads) == 1
    now[0] = 5.0
    await flow.refresh()
    assert len(reads) == 2
    flow.invalidate()
    await flow.refresh()
    assert len(reads) == 3
    assert flow.split(("x", "y")) == (["x"], ["y"])
    assert flow.split(("y",)) == ([], ["y"])
