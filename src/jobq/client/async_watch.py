"""Many coroutines waiting for jobs over few WatchJobs calls (`AsyncClient.wait`).

One WatchJobs call per batch of waits, not one per wait: waits that begin within the linger
(a few milliseconds) share one call of up to 1000 ids, so ten thousand coroutines waiting on
one channel hold ten streams, not ten thousand (each stream costs the server a watch and the
connection an HTTP/2 stream, and servers and proxies cap concurrent streams per connection,
often at 100). A wait for a job already watched joins the call that watches it. A call is
opened again, for the jobs still waited for, when it fails with UNAVAILABLE (a server restart);
a call's unknown id (NOT_FOUND, which fails the whole call) fails that id's waiters alone and
the call is opened again without it. A call whose every waiter left (timed out, cancelled) is
cancelled.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, Callable
from typing import Final

import grpc

from jobq.client.errors import CallFailed
from jobq.client.job_info import ENDED, JobInfo
from jobq.client.retry import RetryPolicy
from jobq.client.watching import MAX_WATCHED
from jobq.rpc._gen import job_service_pb2 as jpb

__all__ = ["DEFAULT_WATCH_LINGER_S", "WatchHub"]

DEFAULT_WATCH_LINGER_S: Final = 0.002
_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")

OpenWatch = Callable[[list[str]], AsyncIterable[jpb.WatchJobsResponse]]


class _Watch:
    """One WatchJobs call (opened again as needed) and the ids it watches."""

    def __init__(self, job_ids: list[str]) -> None:
        self.job_ids = set(job_ids)
        self.task: asyncio.Task[None] | None = None


class WatchHub:
    """Hands each waiter its job once the job has ended."""

    def __init__(
        self,
        open_watch: OpenWatch,
        retry: RetryPolicy,
        *,
        linger_s: float = DEFAULT_WATCH_LINGER_S,
        max_ids: int = MAX_WATCHED,
    ) -> None:
        self._open_watch = open_watch
        self._retry = retry
        self._linger_s = linger_s
        self._max_ids = max_ids
        self._waiters: dict[str, set[asyncio.Future[JobInfo]]] = {}
        self._watching: dict[str, _Watch] = {}
        self._pending: dict[str, None] = {}
        self._timer: asyncio.TimerHandle | None = None

    @property
    def open_calls(self) -> int:
        """WatchJobs calls in progress (tests check the multiplexing with it)."""
        return len({id(watch) for watch in self._watching.values()})

    async def wait(self, job_id: str, timeout: float | None) -> JobInfo:  # noqa: ASYNC109 - the twin of Client's API
        """The job once it has ended (DONE or DEAD_LETTERED). TimeoutError after `timeout`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JobInfo] = loop.create_future()
        self._waiters.setdefault(job_id, set()).add(future)
        if job_id not in self._watching and job_id not in self._pending:
            self._pending[job_id] = None
            if len(self._pending) >= self._max_ids:
                self._flush()
            elif self._timer is None:
                self._timer = loop.call_later(self._linger_s, self._flush)
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._leave(job_id, future)

    def _leave(self, job_id: str, future: asyncio.Future[JobInfo]) -> None:
        future.cancel()
        waiters = self._waiters.get(job_id)
        if waiters is None:
            return
        waiters.discard(future)
        if waiters:
            return
        del self._waiters[job_id]
        self._pending.pop(job_id, None)
        watch = self._watching.pop(job_id, None)
        if watch is not None:
            watch.job_ids.discard(job_id)
            if not watch.job_ids and watch.task is not None:
                watch.task.cancel()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ids = list(self._pending)
        self._pending.clear()
        for start in range(0, len(ids), self._max_ids):
            watch = _Watch(ids[start : start + self._max_ids])
            for job_id in watch.job_ids:
                self._watching[job_id] = watch
            watch.task = asyncio.get_running_loop().create_task(self._run(watch))

    def _deliver(self, watch: _Watch, job: JobInfo) -> None:
        watch.job_ids.discard(job.job_id)
        if self._watching.get(job.job_id) is watch:
            del self._watching[job.job_id]
        for future in self._waiters.pop(job.job_id, set()):
            if not future.done():
                future.set_result(job)

    def _fail(self, watch: _Watch, job_ids: set[str], error: Exception) -> None:
        for job_id in job_ids:
            watch.job_ids.discard(job_id)
            if self._watching.get(job_id) is watch:
                del self._watching[job_id]
            for future in self._waiters.pop(job_id, set()):
                if not future.done():
                    future.set_exception(error)

    async def _run(self, watch: _Watch) -> None:
        failures = 0
        while watch.job_ids:
            try:
                async for reply in self._open_watch(sorted(watch.job_ids)):
                    job = JobInfo.from_proto(reply.job)
                    if job.status in ENDED:
                        self._deliver(watch, job)
                        failures = 0
                if watch.job_ids:  # the call ended without them: ask again
                    failures += 1
                    await asyncio.sleep(self._retry.backoff(min(failures, 10)))
            except grpc.aio.AioRpcError as exc:
                error = CallFailed(exc.code().name, exc.details() or "", "WatchJobs")
                if exc.code() is grpc.StatusCode.UNAVAILABLE:
                    failures += 1
                    await asyncio.sleep(self._retry.backoff(min(failures, 10)))
                    continue
                unknown = set(_UUID.findall(error.details)) & watch.job_ids
                if exc.code() is grpc.StatusCode.NOT_FOUND and unknown:
                    self._fail(watch, unknown, error)
                    continue
                self._fail(watch, set(watch.job_ids), error)
            except Exception as exc:
                self._fail(watch, set(watch.job_ids), exc)
