"""Handlers the benchmark's jobs run (`jq-worker --import bench.handlers`)."""

from __future__ import annotations

import time


def noop() -> None:
    """Does nothing: the drain measures jobq's own cost per job."""


def started_at() -> float:
    """The wall-clock time the job started, for pickup latency (submit → start)."""
    return time.time()


async def started_at_async() -> float:
    """started_at without the thread hop of a sync handler (to compare with started_at: the cost of the thread hop)."""
    return time.time()
