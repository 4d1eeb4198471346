"""Handlers the benchmark's jobs run (`jq-worker --import bench.handlers`)."""

from __future__ import annotations

import time


def noop() -> None:
    """Does nothing: the drain measures jobq's own cost per job."""


def started_at() -> float:
    """The wall-clock time the job started, for pickup latency (submit → start)."""
    return time.time()


async def started_at_async() -> float:
    """started_at without a sync handler's thread hop (compare with started_at: its cost)."""
    return time.time()
