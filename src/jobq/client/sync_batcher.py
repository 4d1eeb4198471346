"""Coalesces submits from many threads into SubmitJobs calls (the sync `Client`).

Leader and followers, no background thread: the first thread to submit when no batch is open
opens one and becomes its leader; threads that submit within the linger (about a millisecond)
join it. The leader then sends the batch (through `BatchPlan`, so a bad job fails alone) and
hands each follower its own outcome. Every caller returns only once its job is committed, or
with its own error. A batch that reaches `max_batch` is closed at once and the leader woken.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from jobq.client.batch_plan import Submitted
from jobq.client.errors import ClientError
from jobq.rpc._gen import job_service_pb2 as jpb

__all__ = ["SyncBatcher"]

SendMany = Callable[[Sequence[jpb.SubmitJobRequest]], list[Submitted | ClientError]]


class _Batch:
    def __init__(self) -> None:
        self.requests: list[jpb.SubmitJobRequest] = []
        self.futures: list[Future[Submitted]] = []
        self.full = threading.Event()


class SyncBatcher:
    """`submit()` from any thread; `send_many` does the calls (with retries and the plan)."""

    def __init__(self, send_many: SendMany, *, linger_s: float, max_batch: int) -> None:
        self._send_many = send_many
        self._linger_s = linger_s
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._open: _Batch | None = None

    def submit(self, request: jpb.SubmitJobRequest) -> Submitted:
        """Submit one job within whatever batch is forming; raises that job's error."""
        future: Future[Submitted] = Future()
        with self._lock:
            batch = self._open
            leader = batch is None
            if batch is None:
                batch = self._open = _Batch()
            batch.requests.append(request)
            batch.futures.append(future)
            if len(batch.requests) >= self._max_batch:
                self._open = None
                batch.full.set()
        if leader:
            batch.full.wait(self._linger_s)
            with self._lock:
                if self._open is batch:
                    self._open = None
            self._send(batch)
        return future.result()

    def _send(self, batch: _Batch) -> None:
        try:
            outcomes = self._send_many(batch.requests)
        except BaseException as exc:  # every caller hears it, then the leader re-raises
            for future in batch.futures:
                future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for future, outcome in zip(batch.futures, outcomes, strict=True):
            if isinstance(outcome, ClientError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
