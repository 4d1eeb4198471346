"""Coalesces submits from many threads into SubmitJobs calls (the sync `Client`).

Leader and followers, no background thread: the first thread to submit when no batch is open
opens one and becomes its leader. When no call is in flight, the leader sends at once: a lone
caller submitting in sequence never waits for company (a 1 ms linger on every submit held one
such caller to about 370 submits/s against 900 without). While a call is in flight, a new batch
gathers the threads that submit until that call returns or the linger (about a millisecond)
ends, whichever comes first: what PostgreSQL's group commit does with commits, and what
jq-server's GroupCommitter does with inserts. The leader then sends the batch (through
`BatchPlan`, so a bad job fails alone) and hands each follower its own outcome. Every caller
returns only once its job is committed, or with its own error. A batch that reaches `max_batch`
is closed at once and the leader woken.
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
        self.go = threading.Event()
        """Set when the batch goes before its linger ends: it is full, or the call in flight
        returned."""


class SyncBatcher:
    """`submit()` from any thread; `send_many` does the calls (with retries and the plan)."""

    def __init__(self, send_many: SendMany, *, linger_s: float, max_batch: int) -> None:
        self._send_many = send_many
        self._linger_s = linger_s
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._open: _Batch | None = None
        self._sending = 0  # calls in flight

    def submit(self, request: jpb.SubmitJobRequest) -> Submitted:
        """Submit one job within whatever batch is forming; raises that job's error."""
        future: Future[Submitted] = Future()
        with self._lock:
            batch = self._open
            leader = batch is None
            alone = leader and not self._sending
            if batch is None:
                batch = _Batch()
                if alone:  # nothing to wait for: send at once
                    self._sending += 1
                else:
                    self._open = batch  # gathers until the call in flight returns
            batch.requests.append(request)
            batch.futures.append(future)
            if len(batch.requests) >= self._max_batch and self._open is batch:
                self._open = None
                batch.go.set()
        if leader:
            if not alone:
                batch.go.wait(self._linger_s)
                with self._lock:
                    if self._open is batch:
                        self._open = None
                    self._sending += 1
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
        finally:
            self._returned()
        for future, outcome in zip(batch.futures, outcomes, strict=True):
            if isinstance(outcome, ClientError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _returned(self) -> None:
        """A call returned: the batch gathering behind it goes now."""
        with self._lock:
            self._sending -= 1
            if self._open is not None:
                self._open.go.set()
