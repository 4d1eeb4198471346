"""Failover without loss: PostgreSQL under Patroni (a primary and a synchronous standby,
`synchronous_mode_strict`, etcd; support/patroni_cluster.py), jq-server on the multi-host DSN
(`target_session_attrs=read-write`), a real jq-worker, and the SDK submitting a few thousand
jobs with idempotency keys while the worker drains them. The primary's postmaster is SIGKILLed
mid-drain; Patroni promotes the standby; submits go on.

A submit whose connection died in flight (COMMIT included) is outcome unknown to jq-server: it
answers UNAVAILABLE, and the client sends the same submit again with the same idempotency key,
which returns the job if the first commit happened and creates it if it did not. The test's
clients do just that (the SDK's retries, then the application's, with the same key), and then
count, from the database and from what the jobs themselves recorded (fault/sink_tasks.py):

- every acknowledged submit exists exactly once, under the job id the client was given;
- every job reaches DONE, and ran to its end at least once (no job stuck, no result lost);
- how long writes were refused: from the kill to the first submit, started after it, that was
  acknowledged (printed; no timed assertion).

It runs in `make test-system-pg` (JQ_TEST_POSTGRES=system), whose PostgreSQL is the
distribution's that Patroni runs here; it needs `apt-get install patroni etcd-server`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from fault import sink_tasks
from fault.cluster import Cluster
from fault.history import read_sink
from support.patroni_cluster import PatroniCluster, PatroniNode, missing_programs

from jobq.client import AsyncClient, CallFailed, RetryPolicy

# Patroni runs the distribution's PostgreSQL, the one make test-system-pg tests: the test runs
# there only (deselected in make test, so CI's no-skip rule holds).
pytestmark = pytest.mark.system_postgres_only

JOBS = 3000
"""Submits in all, each with an idempotency key of its own."""
KILL_AFTER_ACKED = 1000
KILL_AFTER_DONE = 200
"""The kill comes once this many submits were acknowledged and this many jobs are DONE: the
worker is draining and submits are in flight."""
SUBMITTERS = 32
"""Submits in flight at once at most (each a task awaiting its acknowledgement)."""
RATE_PER_S = 250.0
"""The pace of new submits: about what one worker drains, so the kill finds submits still
coming and jobs still waiting (unpaced, the SDK's batches submit everything in seconds)."""
GIVE_UP_S = 60.0
"""How long one submit is retried (same key) before the application would give up on it."""
SETTLE_S = 60.0
"""After the last submit, how long every job gets to reach DONE."""
RETRYABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})


@dataclass
class Submits:
    """Every submit's outcome, by idempotency key."""

    acked: dict[str, str] = field(default_factory=dict)
    """key -> job id, for submits acknowledged."""
    failed: Counter[str] = field(default_factory=Counter)
    """Calls of the submitters' client, which has the SDK's default retry policy, that failed
    all the same (then repeated with the same key), by status code: none is expected, the
    default outlasts a failover."""
    probe_failed: Counter[str] = field(default_factory=Counter)
    """Failed calls of the probe, which tries once per call, by status code."""
    abandoned: list[str] = field(default_factory=list)
    last_failure: float | None = None
    """When a call last failed (monotonic)."""
    existing: int = 0
    """Acknowledgements that found the key's job already there: a repeat whose first call had
    committed (outcome unknown to the client, resolved by the key)."""


@pytest.fixture
async def patroni(tmp_path: Path) -> AsyncIterator[PatroniCluster]:
    missing = missing_programs()
    assert not missing, f"apt-get install {' '.join(missing)}"
    cluster = PatroniCluster()
    try:
        await asyncio.to_thread(cluster.start)
        await asyncio.to_thread(cluster.wait_ready)
        admin = await asyncpg.connect(cluster.dsn())
        try:
            await admin.execute("CREATE DATABASE jobq")
        finally:
            await admin.close()
        yield cluster
    finally:
        await asyncio.to_thread(cluster.stop, tmp_path)


async def _submit(
    client: AsyncClient, sink: Path, key: str, submits: Submits, *, probe: bool = False
) -> float | None:
    """Submit job `key` until acknowledged (or GIVE_UP_S): the SDK retries, and so does this
    loop, always with the same idempotency key. When it was acknowledged (monotonic)."""
    deadline = time.monotonic() + GIVE_UP_S
    while True:
        try:
            job = await client.submit(sink_tasks.run, str(sink), key, 0.0, idempotency_key=key)
        except CallFailed as exc:
            if exc.code not in RETRYABLE:
                raise
            (submits.probe_failed if probe else submits.failed)[exc.code] += 1
            submits.last_failure = time.monotonic()
            if time.monotonic() > deadline:
                submits.abandoned.append(key)
                return None
            await asyncio.sleep(0.05)
            continue
        submits.acked[key] = job.id
        submits.existing += job.existing
        return time.monotonic()


async def _first_write_after(
    promoted: asyncio.Event, client: AsyncClient, sink: Path, submits: Submits
) -> float:
    """Once Patroni has promoted the standby, submit one job until acknowledged; when it was
    (monotonic). Started after the promotion, it can only be written by the new primary: a
    submit started right after the kill may still be acknowledged by the dying one (its
    backends outlive the postmaster by a moment, and its commit was replicated), which would
    say nothing about recovery."""
    try:
        async with asyncio.timeout(SETTLE_S):
            await promoted.wait()
    except TimeoutError:
        raise AssertionError(f"Patroni promoted no standby within {SETTLE_S:g}s") from None
    for attempt in itertools.count():
        acked = await _submit(client, sink, f"probe-{attempt}", submits, probe=True)
        if acked is not None:
            return acked
    raise AssertionError("unreachable")


async def _failover_timeline(
    patroni: PatroniCluster, killed: PatroniNode, killed_at: float, promoted: asyncio.Event
) -> dict[str, float]:
    """Seconds from the kill until Patroni reported another node leading (then `promoted` is
    set), and until the killed node was its synchronous standby again (strict mode: the new
    primary's commits wait for one)."""
    marks: dict[str, float] = {}
    while time.monotonic() < killed_at + SETTLE_S and len(marks) < 2:
        if "promoted" not in marks:
            leader = await asyncio.to_thread(patroni.leader)
            if leader is not None and leader is not killed:
                marks["promoted"] = time.monotonic() - killed_at
                promoted.set()
        elif await asyncio.to_thread(patroni.sync_standby) is killed:
            marks["standby again"] = time.monotonic() - killed_at
        await asyncio.sleep(0.1)
    return marks


async def _count(dsn: str, query: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


async def _wait_for(dsn: str, query: str, at_least: int, within: float) -> int:
    """Poll `query` (a count) until it reaches `at_least` or `within` passes; the last count.
    Connection errors count as not yet (the primary may be changing)."""
    deadline = time.monotonic() + within
    count = -1
    while time.monotonic() < deadline:
        try:
            count = await _count(dsn, query)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            count = -1
        if count >= at_least:
            break
        await asyncio.sleep(0.2)
    return count


async def test_primary_sigkilled_mid_drain_loses_nothing(
    patroni: PatroniCluster, tmp_path: Path
) -> None:
    dsn = patroni.dsn("jobq")
    cluster = Cluster("patroni failover", dsn, tmp_path, {})
    submits = Submits()
    try:
        [server] = await cluster.start_replicas(1)
        cluster.start_worker(server, concurrency=20)
        address = f"127.0.0.1:{server.port}"
        async with (
            AsyncClient(address) as client,  # the SDK's default retry policy
            AsyncClient(address, retry=RetryPolicy(attempts=1)) as probe,
        ):
            keys = iter(range(JOBS))
            started = time.monotonic()

            async def submitter() -> None:
                for n in keys:
                    await asyncio.sleep(max(0.0, started + n / RATE_PER_S - time.monotonic()))
                    await _submit(client, cluster.sink, f"job-{n:05d}", submits)

            feeding = [asyncio.create_task(submitter()) for _ in range(SUBMITTERS)]
            try:
                while len(submits.acked) < KILL_AFTER_ACKED:
                    await asyncio.sleep(0.05)
                done = await _wait_for(
                    dsn, "SELECT count(*) FROM jobs WHERE status = 'DONE'", KILL_AFTER_DONE, 30
                )
                assert done >= KILL_AFTER_DONE, f"the worker drained only {done} jobs"
                acked_at_kill = len(submits.acked)
                killed = patroni.kill_primary_postmaster()
                killed_at, killed_wall = time.monotonic(), time.time()
                promoted = asyncio.Event()
                timeline = asyncio.create_task(
                    _failover_timeline(patroni, killed, killed_at, promoted)
                )
                recovered_at = await _first_write_after(promoted, probe, cluster.sink, submits)
                await asyncio.gather(*feeding)
            finally:
                for task in feeding:
                    task.cancel()
                await asyncio.gather(*feeding, return_exceptions=True)
        recovery_s = recovered_at - killed_at
        marks = await timeline
        leader = patroni.leader()
        refused_s = (submits.last_failure or killed_at) - killed_at
        settled = await _wait_for(
            dsn,
            "SELECT count(*) FROM jobs WHERE status IN ('DONE', 'DEAD_LETTERED')",
            len(submits.acked),
            SETTLE_S,
        )
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT idempotency_key, job_id::text AS job_id, status::text AS status FROM jobs"
            )
            completions = await conn.fetchval(
                "SELECT count(*) FROM job_events WHERE reason = 'COMPLETED'"
            )
            # The drain going again: the first result the new primary recorded (after the
            # promotion was seen, so not a last one of the dying primary's).
            first_result = await conn.fetchval(
                "SELECT extract(epoch FROM min(occurred_at))::float8 FROM job_events"
                " WHERE reason = 'COMPLETED' AND occurred_at > to_timestamp($1)",
                killed_wall + marks.get("promoted", 0.0),
            )
        finally:
            await conn.close()
    finally:
        await cluster.close()

    stored: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        stored.setdefault(row["idempotency_key"], []).append((row["job_id"], row["status"]))
    runs = read_sink(cluster.sink)
    missing = [k for k in submits.acked if k not in stored]
    doubled = [k for k, jobs in stored.items() if len(jobs) > 1]
    wrong_id = [k for k, i in submits.acked.items() if k in stored and stored[k][0][0] != i]
    not_done = [f"{k}:{jobs[0][1]}" for k, jobs in stored.items() if jobs[0][1] != "DONE"]
    never_ran = [k for k in stored if not any(r.end is not None for r in runs.get(k, []))]
    reruns = sum(max(0, len(r) - 1) for r in runs.values())
    if first_result is not None:
        marks["first result recorded"] = first_result - killed_wall
    patroni_says = ", ".join(f"{mark} after {s:.2f}s" for mark, s in marks.items())
    summary = (
        f"failover: killed {killed.name}'s postmaster with {acked_at_kill} submits"
        f" acknowledged; {leader.name if leader else 'no node'} leads now; first write"
        f" on the new primary acknowledged {recovery_s:.2f}s after the kill, last call"
        f" refused {refused_s:.2f}s after it (after the kill:"
        f" {patroni_says}). Submits: {len(submits.acked)}"
        f" acknowledged ({submits.existing} found their key's job already there),"
        f" {len(submits.abandoned)} abandoned, calls failed after the SDK's retries"
        f" {dict(submits.failed)} (the probe's single tries: {dict(submits.probe_failed)})."
        f" Jobs: {len(rows)} stored, {settled} terminal,"
        f" {completions} COMPLETED events, {reruns} executions beyond the first."
    )
    print(summary)
    assert not missing, f"acknowledged but not stored: {missing[:10]}; {summary}"
    assert not doubled, f"one key, several jobs: {doubled[:10]}; {summary}"
    assert not wrong_id, f"stored under another id than acknowledged: {wrong_id[:10]}; {summary}"
    assert not submits.abandoned, f"submits never acknowledged: {submits.abandoned[:10]}"
    assert not submits.failed, f"the SDK's default retries gave up during the failover; {summary}"
    assert not not_done, f"jobs not DONE after {SETTLE_S:g}s: {not_done[:10]}; {summary}"
    assert not never_ran, f"DONE without a finished execution: {never_ran[:10]}; {summary}"
    assert len(submits.acked) == JOBS + sum(k.startswith("probe-") for k in submits.acked)
