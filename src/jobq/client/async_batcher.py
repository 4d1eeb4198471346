"""Coalesces submits from many coroutines into SubmitJobs calls (`AsyncClient`).

The first submit when no batch is open opens one and arms a timer (the linger; 0, the
default, closes it at the end of the current pass of the event loop, once every coroutine
already woken has run); submits until then join it, and a batch that reaches `max_batch`
closes at once.
A closed batch is sent by a task of its own (through `BatchPlan`, so a bad job fails alone),
not by one of the callers, so a caller that is cancelled never strands the others. Each caller
awaits its own outcome: the job committed, or its own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from jobq.client.batch_plan import Submitted
from jobq.client.errors import ClientError
from jobq.rpc._gen import job_service_pb2 as jpb

__all__ = ["AsyncBatcher"]

SendMany = Callable[[Sequence[jpb.SubmitJobRequest]], Awaitable[list[Submitted | ClientError]]]


class _Batch:
    def __init__(self) -> None:
        self.requests: list[jpb.SubmitJobRequest] = []
        self.futures: list[asyncio.Future[Submitted]] = []
        self.timer: asyncio.Handle | None = None


class AsyncBatcher:
    """`await submit(request)` from any coroutine of one event loop."""

    def __init__(self, send_many: SendMany, *, linger_s: float, max_batch: int) -> None:
        self._send_many = send_many
        self._linger_s = linger_s
        self._max_batch = max_batch
        self._open: _Batch | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, request: jpb.SubmitJobRequest) -> Submitted:
        """Submit one job within whatever batch is forming; raises that job's error. A caller
        cancelled while its batch is in flight may still have its job created."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Submitted] = loop.create_future()
        batch = self._open
        if batch is None:
            batch = self._open = _Batch()
            if self._linger_s > 0:
                batch.timer = loop.call_later(self._linger_s, self._close, batch)
            else:
                # No linger: the batch closes once every coroutine already ready in this pass
                # of the event loop has run; those that submit then all join it.
                batch.timer = loop.call_soon(self._close, batch)
        batch.requests.append(request)
        batch.futures.append(future)
        if len(batch.requests) >= self._max_batch:
            self._close(batch)
        return await future

    def _close(self, batch: _Batch) -> None:
        if self._open is batch:
            self._open = None
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: _Batch) -> None:
        try:
            outcomes = await self._send_many(batch.requests)
        except BaseException as exc:
            for future in batch.futures:
                if not future.done():
                    future.set_exception(
                        exc if isinstance(exc, Exception) else asyncio.CancelledError()
                    )
            if not isinstance(exc, Exception):
                raise
            return
        for future, outcome in zip(batch.futures, outcomes, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(outcome, ClientError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def aclose(self) -> None:
        """Send what is forming and wait for every batch in flight."""
        if self._open is not None:
            self._close(self._open)
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
