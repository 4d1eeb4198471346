"""Group commit: concurrent callers' items are written together, one statement per batch.

PostgreSQL commits are the cost that matters (one fsync each), so items that arrive while a
batch is being written wait and go out together in the next one — the same idea as
PostgreSQL's own group commit. There is no timer: an idle system writes a lone item at once,
and a busy one forms large batches by itself. A caller's future resolves only after its batch
committed, so durability per item is unchanged.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

FlushFn = Callable[[list[T]], Awaitable[Sequence[R]]]


class GroupCommitter(Generic[T, R]):
    """Batches items from concurrent callers into calls of `flush`, which returns one result per
    item in order. Up to `max_in_flight` flushes run at once (to use more than one connection)."""

    def __init__(self, flush: FlushFn[T, R], max_batch: int, max_in_flight: int = 2) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._slots = max_in_flight
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._contexts: list[contextvars.Context] = []  # each pending item's caller's
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        # The hot path of single submits: one future, no gather.
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._contexts.append(contextvars.copy_context())
        self._kick()
        return await future

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = []
        context = contextvars.copy_context()
        for item in items:
            future: asyncio.Future[R] = loop.create_future()
            self._pending.append((item, future))
            self._contexts.append(context)
            futures.append(future)
        self._kick()
        return list(await asyncio.gather(*futures))

    def _kick(self) -> None:
        while self._pending and len(self._tasks) < self._slots:
            batch, self._pending = (
                self._pending[: self._max_batch],
                self._pending[self._max_batch :],
            )
            contexts, self._contexts = (
                self._contexts[: self._max_batch],
                self._contexts[self._max_batch :],
            )
            # The flush runs in its callers' context (the correlation id its log lines carry)
            # when it has one caller, else in none: not in whichever caller came first.
            first = contexts[0]
            context = first if all(c is first for c in contexts) else contextvars.Context()
            task = asyncio.get_running_loop().create_task(self._write(batch), context=context)
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._pending:
            self._kick()

    async def _write(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self._flush(items)
        except BaseException as exc:  # every waiter learns what happened to its item
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        if len(results) != len(batch):
            error = RuntimeError(f"flush returned {len(results)} results for {len(batch)} items")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def drain(self) -> None:
        """Wait until everything submitted so far has been written."""
        while self._tasks or self._pending:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            else:
                self._kick()
                await asyncio.sleep(0)
