"""What the fault suite submits, and how: a seeded mix of jobs that record their executions
(sink_tasks.py), fed at a steady rate through the replicas the scenario chooses."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from fault.ledger import DONE_ONLY
from fault.processes import Replica
from fault.sink_tasks import command_payload, handler_payload
from support.server_harness import Client

from jobq.rpc._gen import job_service_pb2 as jpb


@dataclass
class JobMix:
    """What the feed submits: durations and kinds drawn from a seeded random source.

    `python_share` of the jobs are sync handlers (threads of the worker), the rest command
    jobs (processes of their own); `long_share` of the command jobs work `long_s` seconds
    instead of `short_s`. Handlers stay short: a thread cannot be stopped, so a handler that
    outlives its worker's contact with the server would overlap its own re-run whatever jobq
    did; a command job can be killed, and jobq must."""

    sink: Path
    rng: random.Random
    python_share: float = 0.5
    long_share: float = 0.0
    short_s: tuple[float, float] = (0.3, 1.5)
    long_s: tuple[float, float] = (4.0, 6.0)
    seconds: dict[str, float] = field(default_factory=dict)
    """How long each job works, by tag."""

    def __call__(self, tag: str) -> bytes:
        if self.rng.random() < self.python_share:
            seconds = self.seconds[tag] = round(self.rng.uniform(*self.short_s), 2)
            return handler_payload(self.sink, tag, seconds)
        span = self.long_s if self.rng.random() < self.long_share else self.short_s
        seconds = self.seconds[tag] = round(self.rng.uniform(*span), 2)
        return command_payload(self.sink, tag, seconds)

    def is_long(self, tag: str) -> bool:
        return self.seconds.get(tag, 0.0) >= self.long_s[0]


class Feed:
    """Submits jobs at a steady rate, round-robin over the replicas it is told to use, and
    accounts for every submit: accepted (an id came back), or failed with its code."""

    def __init__(self, make: Callable[[str], bytes], rate_per_s: float) -> None:
        self._make = make
        self._period_s = 1.0 / rate_per_s
        self.targets: list[tuple[Replica, Client]] = []
        self.accepted: dict[str, str] = {}
        self.expected: dict[str, frozenset[str]] = {}
        self.failed: Counter[str] = Counter()
        self._number = 0
        self._task: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()

    def route(self, targets: list[tuple[Replica, Client]]) -> None:
        self.targets = list(targets)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="feed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(*self._calls, return_exceptions=True)

    async def submit(
        self,
        tag: str,
        payload: bytes,
        *,
        expect: frozenset[str] = DONE_ONLY,
        max_retries: int | None = None,
        target: int | None = None,
    ) -> str | None:
        """One submit through the next (or the `target`-th) replica; the job id or None."""
        replica, client = self.targets[
            target if target is not None else self._number % len(self.targets)
        ]
        self._number += 1
        request = jpb.SubmitJobRequest(queue_name="default", payload=payload)
        if max_retries is not None:
            request.max_retries = max_retries
        try:
            reply = await client.jobs.SubmitJob(request, timeout=5)
        except grpc.aio.AioRpcError as exc:
            self.failed[f"{replica.name}:{exc.code().name}"] += 1
            return None
        self.accepted[tag] = reply.job_id
        self.expected[tag] = expect
        return str(reply.job_id)

    async def _run(self) -> None:
        number = 0
        next_at = time.monotonic()
        while True:
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # the feed's pace, not a wait for a state
            if self.targets:
                tag = f"j{number:05d}"
                call = asyncio.create_task(self.submit(tag, self._make(tag)))
                self._calls.add(call)
                call.add_done_callback(self._calls.discard)
                number += 1
            next_at += self._period_s
