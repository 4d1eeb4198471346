"""Handlers the benchmark's jobs run (`jq-worker --import bench.handlers`).

The drain and the pickup run the async ones (`noop_async`, `started_at_async`), as pgqueuer's
entrypoints in the same run are `async def` (bench/pgqueuer_worker.py): the same scenario on
both sides. A sync handler runs in a thread of jq-worker's pool, one more hand-over per job
(`noop`, `started_at`: kept to measure that by hand).
"""

from __future__ import annotations

import time


def noop() -> None:
    """Does nothing, in a thread of the worker's pool."""


async def noop_async() -> None:
    """Does nothing: the drain measures jobq's own cost per job."""


def started_at() -> float:
    """The wall-clock time the job started, in a thread of the worker's pool."""
    return time.time()


async def started_at_async() -> float:
    """The wall-clock time the job started, for pickup latency (submit → start)."""
    return time.time()
