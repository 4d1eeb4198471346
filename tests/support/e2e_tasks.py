"""Handlers the end-to-end tests ask jq-worker to run (`--import support.e2e_tasks`)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import jobq


def add(a: int, b: int) -> int:
    return a + b


async def async_greet(name: str) -> dict[str, str]:
    await asyncio.sleep(0)
    return {"greeting": f"hello {name}"}


def record_span(path: str, seconds: float, tag: str) -> str:
    """Append this job's start and end times (and process) to `path`, sleeping in between."""
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    with Path(path).open("a") as handle:
        handle.write(f"{tag} {start} {end} {os.getpid()}\n")
    return tag


def fail_until_marker(marker: str) -> str:
    """Fails while `marker` does not exist; the tests create it to let a retry succeed."""
    if not Path(marker).exists():
        raise RuntimeError(f"marker {marker} missing")
    return "ok"


def noop() -> None:
    return None


@jobq.task(name="shout")
def shout(text: str) -> str:
    """Registered by name with the decorator: payloads say {"handler": "shout"}."""
    return text.upper()
