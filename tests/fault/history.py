"""What happened in a scenario, read back: the jq-worker processes and the faults (kept by the
cluster), the executions (the sink file the jobs write, see sink_tasks.py) and the jobs with their
events (PostgreSQL). The ledger (ledger.py) compares them.

Executions and faults carry wall-clock times, as do PostgreSQL's `now()` timestamps: one clock
on one machine.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from fault.sink_tasks import TICK_S, tag_of

ALIVE_AT_FAULT_S = 5 * TICK_S
"""An unfinished execution last seen this long before a fault had died before it."""
SILENT_FOR_S = 0.6
"""The sink is settled when nothing was written to it for this long."""


@dataclass(frozen=True)
class Incarnation:
    """One jq-worker process: its worker id, pid, and when it started and died (wall clock)."""

    name: str
    worker_id: str
    pid: int
    started: float
    ended: float | None = None


@dataclass(frozen=True)
class Fault:
    """A fault injected at `at` and undone at `until` (wall clock); `workers` are the worker
    ids it hit directly (None: any worker, e.g. a database outage). `frozen`: their processes
    were paused (SIGSTOP) throughout."""

    name: str
    at: float
    until: float
    workers: frozenset[str] | None = None
    frozen: bool = False


@dataclass
class Execution:
    """One run of a job, from the sink."""

    tag: str
    run: str
    pid: int
    chain: tuple[int, ...]
    start: float
    last: float
    end: float | None = None
    owner: Incarnation | None = None
    attempt: int | None = None

    def alive_at(self, moment: float) -> bool:
        if self.start > moment:
            return False
        if self.end is not None:
            return self.end > moment
        return self.last >= moment - ALIVE_AT_FAULT_S


class Sink:
    """The sink file, read incrementally: each call of `runs()` parses only what was appended
    since the last one (a soak's sink grows to many megabytes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._runs: dict[tuple[str, str], Execution] = {}
        self._by_tag: dict[str, list[Execution]] = {}

    def runs(self) -> dict[str, list[Execution]]:
        """Executions by tag, each job's in the order they started."""
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line being written waits for next time
        self._offset += len(complete)
        changed: set[str] = set()
        for line in complete.decode(errors="replace").splitlines():
            parts = line.split()
            if len(parts) != 6:
                continue
            tag, run, event, at_text, pid, chain = parts
            at = float(at_text)
            execution = self._runs.get((tag, run))
            if execution is None:
                ancestors = tuple(int(p) for p in chain.split(",")) if chain != "-" else ()
                execution = Execution(tag, run, int(pid), ancestors, at, at)
                self._runs[(tag, run)] = execution
                self._by_tag.setdefault(tag, []).append(execution)
                changed.add(tag)
            execution.start = min(execution.start, at)
            execution.last = max(execution.last, at)
            if event == "end":
                execution.end = at
        for tag in changed:
            self._by_tag[tag].sort(key=lambda e: e.start)
        return self._by_tag


def read_sink(path: Path) -> dict[str, list[Execution]]:
    """Executions by tag, each job's in the order they started (the whole file, once)."""
    return Sink(path).runs() if path.exists() else {}


@dataclass(frozen=True)
class Event:
    job_id: str
    reason: str
    to_status: str
    worker_id: str | None
    attempt: int | None
    at: float


@dataclass(frozen=True)
class JobRow:
    job_id: str
    tag: str | None
    status: str
    attempt: int


async def read_database(dsn: str) -> tuple[list[JobRow], dict[str, list[Event]]]:
    conn = await asyncpg.connect(dsn)
    try:
        jobs = await conn.fetch("SELECT job_id::text, status::text, attempt, payload FROM jobs")
        events = await conn.fetch(
            "SELECT job_id::text, reason, to_status::text, worker_id::text, attempt,"
            " extract(epoch FROM occurred_at)::float8 AS at FROM job_events ORDER BY id"
        )
    finally:
        await conn.close()
    rows = [JobRow(r["job_id"], tag_of(r["payload"]), r["status"], r["attempt"]) for r in jobs]
    by_job: dict[str, list[Event]] = {}
    for r in events:
        by_job.setdefault(r["job_id"], []).append(
            Event(r["job_id"], r["reason"], r["to_status"], r["worker_id"], r["attempt"], r["at"])
        )
    return rows, by_job


async def wait_settled(dsn: str, sink: Path, within: float) -> float:
    """Wait until every job is terminal (or `within` seconds passed), then until the sink is
    quiet (executions that outlive their job, orphans, have had their say). The seconds it
    took."""
    started = time.monotonic()
    deadline = started + within
    while time.monotonic() < deadline:
        conn = await asyncpg.connect(dsn)
        try:
            open_jobs = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE status NOT IN ('DONE', 'DEAD_LETTERED')"
            )
        finally:
            await conn.close()
        if open_jobs == 0:
            break
        await asyncio.sleep(0.2)
    settled = time.monotonic() - started
    quiet_deadline = time.monotonic() + 10.0
    size, since = -1, time.monotonic()
    while time.monotonic() < quiet_deadline:
        now_size = _size(sink)
        if now_size != size:
            size, since = now_size, time.monotonic()
        elif time.monotonic() - since >= SILENT_FOR_S:
            break
        await asyncio.sleep(0.1)
    return settled


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0
