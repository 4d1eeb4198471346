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


def cancellable_loop(marker: str) -> str:
    """Reports progress, then works until cancelled, checking `jobq.current_job().cancelled`
    like a sync handler should; leaves `<marker>.seen` once it saw the cancel."""
    job = jobq.current_job()
    jobq.progress(0.42, "resized 42 of 100")
    Path(marker).write_text(f"{job.job_id} {job.attempt}")
    while not job.cancelled:
        time.sleep(0.02)
    Path(f"{marker}.seen").write_text("cancelled")
    return "stopped early"


async def sleep_until_cancelled(marker: str) -> None:
    """An `async def` handler that waits a minute; leaves `<marker>.cancelled` when its task is
    cancelled."""
    _write(marker, "started")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        _write(f"{marker}.cancelled", "yes")
        raise


def _write(path: str, text: str) -> None:
    Path(path).write_text(text)


def traced_work(n: int) -> int:
    """Makes a span of its own (OpenTelemetry's API, as application code would): with tracing
    on, jq-worker's provider exports it as a child of the job's `jobq.execute` span."""
    from opentelemetry import trace

    with trace.get_tracer("support.e2e_tasks").start_as_current_span("handler work"):
        return n * 2
