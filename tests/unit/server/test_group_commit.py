"""GroupCommitter's flush runs in its caller's context (contextvars: the RPC's correlation id,
which the lifecycle's log lines carry) when the batch has one caller, and in an empty one when
it gathers several: never attributed to whichever caller happened to come first."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

from jobq.server.group_commit import GroupCommitter

CALLER: ContextVar[str] = ContextVar("caller", default="")


async def test_a_flush_runs_in_its_only_callers_context_or_in_none() -> None:
    seen: list[tuple[str, list[int]]] = []
    release = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        seen.append((CALLER.get(), items))
        await release.wait()
        return items

    committer: GroupCommitter[int, int] = GroupCommitter(flush, max_batch=10, max_in_flight=1)

    async def submit(name: str, item: int) -> int:
        CALLER.set(name)
        return await committer.submit(item)

    async def submit_many(name: str, items: list[int]) -> list[int]:
        CALLER.set(name)
        return await committer.submit_many(items)

    first = asyncio.create_task(submit("a", 1))
    await asyncio.sleep(0)  # the first flush starts with a's item alone
    rest = [
        asyncio.create_task(submit("b", 2)),
        asyncio.create_task(submit("c", 3)),
    ]
    await asyncio.sleep(0)
    release.set()
    assert await first == 1
    assert await asyncio.gather(*rest) == [2, 3]
    assert await submit_many("d", [4, 5]) == [4, 5]
    assert seen == [("a", [1]), ("", [2, 3]), ("d", [4, 5])]
