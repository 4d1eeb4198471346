"""A client that submits jobs at a steady rate and accounts for every submit.

Each submit carries a tag of its own (its job's payload names it), so what the worker ran can be
matched with what was accepted independently of jobq. A submit is accepted when the server
answered with a job id; one that failed is kept with its status code and times, so a test can
check that failures happened only while it expected them (a database outage) and were the
expected kind (UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from jobq.rpc._gen import job_service_pb2 as jpb
from support.server_harness import Client


@dataclass(frozen=True)
class Submitted:
    """One submit: when it was sent and answered (monotonic), and its job id or error code."""

    tag: str
    sent_at: float
    answered_at: float
    job_id: str | None
    code: grpc.StatusCode | None = None
    details: str = ""


class JobStream:
    """Submits one job every 1/`rate_per_s` seconds through `client`, each as its own call, so a
    slow answer does not hold the next submit back. `payload(tag)` gives a job's payload."""

    def __init__(
        self,
        client: Client,
        payload: Callable[[str], bytes],
        *,
        rate_per_s: float,
        timeout_s: float = 5.0,
        queue: str = "default",
    ) -> None:
        self._client = client
        self._payload = payload
        self._period_s = 1.0 / rate_per_s
        self._timeout_s = timeout_s
        self._queue = queue
        self.submitted: list[Submitted] = []
        self._answered = asyncio.Event()
        self._calls: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def accepted(self) -> dict[str, str]:
        """tag → job id of every accepted submit."""
        return {s.tag: s.job_id for s in self.submitted if s.job_id is not None}

    @property
    def failed(self) -> list[Submitted]:
        return [s for s in self.submitted if s.job_id is None]

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="job-stream")

    async def stop(self) -> None:
        """Stop submitting and wait for the answers of the submits still in flight."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(*self._calls, return_exceptions=True)

    async def accepted_after(self, moment: float, count: int, *, within: float) -> None:
        """Wait until `count` submits sent after `moment` (monotonic) were accepted."""
        async with asyncio.timeout(within):
            while sum(s.sent_at > moment and s.job_id is not None for s in self.submitted) < count:
                self._answered.clear()
                await self._answered.wait()

    async def _run(self) -> None:
        number = 0
        next_at = time.monotonic()
        while True:
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # the stream's pace, not a wait for a state
            call = asyncio.create_task(self._submit(f"job-{number}"))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)
            number += 1
            next_at += self._period_s

    async def _submit(self, tag: str) -> None:
        sent_at = time.monotonic()
        request = jpb.SubmitJobRequest(queue_name=self._queue, payload=self._payload(tag))
        try:
            reply = await self._client.jobs.SubmitJob(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            outcome = Submitted(
                tag, sent_at, time.monotonic(), None, exc.code(), exc.details() or ""
            )
        else:
            outcome = Submitted(tag, sent_at, time.monotonic(), reply.job_id)
        self.submitted.append(outcome)
        self._answered.set()
