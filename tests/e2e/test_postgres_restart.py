"""Survives the database going away: PostgreSQL restarts, or stops for 10 s, under a steady
stream of jobs, with the real jq-server (two replicas) and jq-worker processes.

The PostgreSQL is the test's own (`local_postgres`, so the suite's target: the embedded wheel's
or the distribution's package), stopped with `pg_ctl stop -m fast` and started again by the test.
A client submits a job every 50 ms to the replica the worker is attached to, throughout; a job
runs 0.5 s, so about ten are running when PostgreSQL goes away. Each job appends its tag to a
file when it runs, so executions are counted independently of jobq. Counted and asserted:
- every submit that returned an id ends DONE before a deadline (none lost, none left PENDING,
  ASSIGNED or RUNNING), and ran at least once; runs beyond the first are duplicates, which
  at-least-once delivery allows (printed, and at most the jobs the worker held);
- submits that failed did so with UNAVAILABLE, and only while the database was away;
- `/readyz` answered 503 while the database was down and 200 again after it came back;
- the server's LISTEN was reconnected: once both replicas listen again, a job submitted through
  the second replica (which has no worker, so its NOTIFY is the only news the first replica gets
  of it) is claimed within seconds although `scheduler.interval_ms` is 30 s, and sooner after
  the first replica's last dispatch cycle than its next poll was due: only the notification can
  have woken it.

The restart is `stop()` then `start()` (what `EmbeddedPostgres.restart()` does), with the start
held back only until /readyz has answered 503 once, so the not-ready answer is observed, not
hoped for. A fast stop, not an immediate one: the embedded target runs with synchronous_commit
off, and an immediate stop there may drop commits the server was told had happened.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from support.job_stream import JobStream
from support.postgres import create_database, postgres_target, stoppable_postgres
from support.processes import ServerFactory, ServerProcess, WorkerFactory, free_port
from support.readiness_probe import ReadinessProbe
from support.server_harness import Client, client_for

from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.storage.embedded import EmbeddedPostgres

INTERVAL_MS = 30_000  # the dispatcher's fallback poll: far longer than any prompt pickup here
RATE_PER_S = 20
JOB_SECONDS = 0.5
CONCURRENCY = 16
OUTAGE_S = 10.0
PROMPT_S = 5.0
"""A pickup this fast after a submit on the other replica can only come from its NOTIFY."""
FINISH_WITHIN_S = 90.0
"""Every accepted job is DONE by then: enough for an assignment lost in the outage to time out
(scheduler.assignment_timeout_s, 30 s) and run again."""
SETTLE_S = 1.0
"""How long after /readyz is 200 again a submit may still fail (it was sent before it)."""


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, which it stops and starts again."""
    with stoppable_postgres("jobq-restart-pg-") as server:
        yield server


async def _fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _wait_finished(dsn: str, job_ids: list[str], within: float) -> Counter[str]:
    """Wait until every job is DONE or DEAD_LETTERED, or `within` seconds passed; the jobs'
    counts by status at the end."""
    deadline = time.monotonic() + within
    while True:
        rows = await _fetch(
            dsn,
            "SELECT status::text, count(*) AS n FROM jobs WHERE job_id = ANY($1::uuid[])"
            " GROUP BY status",
            job_ids,
        )
        counts = Counter({row["status"]: row["n"] for row in rows})
        if counts["DONE"] + counts["DEAD_LETTERED"] == len(job_ids):
            return counts
        if time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.2)


async def _wait_listeners(dsn: str, count: int, within: float) -> None:
    """Wait until `count` sessions have LISTENed (and are idle since) on this database."""
    deadline = time.monotonic() + within
    while True:
        [row] = await _fetch(
            dsn,
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'idle' AND query ILIKE 'LISTEN %'",
        )
        if row["n"] >= count:
            return
        assert time.monotonic() < deadline, f"{row['n']} of {count} replicas LISTEN again"
        await asyncio.sleep(0.1)


def _runs(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Each tag's runs as (start, end) wall-clock times (record_span appends `tag start end
    pid` per run)."""
    runs: dict[str, list[tuple[float, float]]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        tag, start, end, _ = line.split()
        runs.setdefault(tag, []).append((float(start), float(end)))
    return runs


def _unexpected_errors(server: ServerProcess) -> list[dict[str, Any]]:
    """The RPCs the server answered INTERNAL ("unexpected error" records of its log)."""
    records = []
    for line in server.log().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("message") == "unexpected error":
            records.append(record)
    return records


def _statuses(probe: ReadinessProbe, start: float, end: float = float("inf")) -> dict[int, int]:
    """How often /readyz gave each status in [start, end] (0: no answer)."""
    return dict(Counter(a.status for a in probe.between(start, end)))


@dataclass(frozen=True)
class Outage:
    """When PostgreSQL went away and came back (monotonic, and wall clock for the stop)."""

    stopping: float
    stopping_wall: float
    down: float
    restarting: float
    up: float
    ready: float  # /readyz answered 200 again
    not_ready: int  # 503 answers while down


async def _take_postgres_away(
    postgres: EmbeddedPostgres, probe: ReadinessProbe, outage: str
) -> Outage:
    stopping, stopping_wall = time.monotonic(), time.time()
    await asyncio.to_thread(postgres.stop, "fast")
    down = time.monotonic()
    if outage == "restart":
        try:
            await probe.first(503, after=down, within=15)
        except TimeoutError:
            raise AssertionError(f"/readyz said {_statuses(probe, down)} after the stop") from None
    else:
        await asyncio.sleep(OUTAGE_S)  # the outage itself
    restarting = time.monotonic()
    await asyncio.to_thread(postgres.start)
    up = time.monotonic()
    ready = await probe.first(200, after=up, within=30)
    not_ready = [a for a in probe.between(down, restarting) if a.status == 503]
    assert not_ready, f"/readyz said {_statuses(probe, down, restarting)} while PostgreSQL was down"
    return Outage(stopping, stopping_wall, down, restarting, up, ready.at, len(not_ready))


async def _notified_pickup(
    dsn: str, client: Client, payload: Callable[[str], bytes]
) -> tuple[float, float]:
    """Submit a job through `client`'s replica once both replicas LISTEN again; (seconds from
    its creation to its claim, seconds from the last other job's update to its claim)."""
    await _wait_listeners(dsn, 2, within=30)
    reply = await client.jobs.SubmitJob(
        jpb.SubmitJobRequest(queue_name="default", payload=payload("notified")), timeout=10
    )
    finished = await _wait_finished(dsn, [reply.job_id], within=INTERVAL_MS / 1000 + 15)
    assert finished["DONE"] == 1, f"the notified job did not finish: {dict(finished)}"
    [row] = await _fetch(
        dsn,
        "SELECT j.created_at, (SELECT min(occurred_at) FROM job_events"
        "   WHERE job_id = j.job_id AND reason = 'ASSIGNED') AS claimed_at,"
        " (SELECT max(updated_at) FROM jobs WHERE job_id <> j.job_id) AS last_activity"
        " FROM jobs j WHERE j.job_id = $1",
        reply.job_id,
    )
    pickup = (row["claimed_at"] - row["created_at"]).total_seconds()
    since_activity = (row["claimed_at"] - row["last_activity"]).total_seconds()
    return pickup, since_activity


@pytest.mark.parametrize("outage", ["restart", "down-10s"])
async def test_no_accepted_job_is_lost_when_postgres_goes_away(
    outage: str,
    own_postgres: EmbeddedPostgres,
    start_server: ServerFactory,
    start_worker: WorkerFactory,
    tmp_path: Path,
) -> None:
    dsn = await create_database(own_postgres)
    health_port = free_port()
    env = {"JQ_DB_DSN": dsn, "JQ_SCHEDULER_INTERVAL_MS": str(INTERVAL_MS)}
    serving = start_server({**env, "JQ_HEALTH_PORT": str(health_port)})
    other = start_server(env)  # a second replica with no worker: a NOTIFY is all it can send
    worker = start_worker(
        serving, "--import", "support.e2e_tasks", "--concurrency", str(CONCURRENCY)
    )
    runs = tmp_path / "executions"

    def payload(tag: str) -> bytes:
        call = {"handler": "support.e2e_tasks:record_span", "args": [str(runs), JOB_SECONDS, tag]}
        return json.dumps(call).encode()

    client, other_client = client_for(serving.grpc_port), client_for(other.grpc_port)
    probe = ReadinessProbe(health_port)
    stream = JobStream(client, payload, rate_per_s=RATE_PER_S)
    probe.start()
    stream.start()
    try:
        # Steady: jobs are accepted and done before PostgreSQL goes away.
        await stream.accepted_after(time.monotonic(), 2 * RATE_PER_S, within=30)
        steady = await _wait_finished(dsn, list(stream.accepted.values())[:RATE_PER_S], 30)
        assert steady["DONE"] == RATE_PER_S, f"jobs do not run before the outage: {steady}"
        went = await _take_postgres_away(own_postgres, probe, outage)
        # The stream goes on after the outage, then stops; everything accepted must finish.
        await stream.accepted_after(went.ready, 2 * RATE_PER_S, within=30)
        await stream.stop()
        accepted = stream.accepted
        draining = time.monotonic()
        counts = await _wait_finished(dsn, list(accepted.values()), FINISH_WITHIN_S)
        drained = time.monotonic() - draining
        # LISTEN is back on both replicas; a submit on the other one wakes the serving one.
        pickup, since_activity = await _notified_pickup(dsn, other_client, payload)
    finally:
        await stream.stop()
        await probe.stop()
        await client.channel.close()
        await other_client.channel.close()

    executions = _runs(runs)
    never_ran = [tag for tag in accepted if not executions.get(tag)]
    duplicates = sum(max(len(executions.get(tag, [])) - 1, 0) for tag in accepted)
    unacknowledged = set(executions) - set(accepted) - {"notified"}
    running_at_stop = [
        tag
        for tag in accepted
        if any(start < went.stopping_wall < end for start, end in executions.get(tag, []))
    ]
    other_events = await _fetch(
        dsn,
        "SELECT reason, count(*) AS n FROM job_events WHERE job_id = ANY($1::uuid[])"
        " AND reason NOT IN ('SUBMITTED', 'ASSIGNED', 'STARTED', 'COMPLETED') GROUP BY reason",
        list(accepted.values()),
    )
    internal = _unexpected_errors(serving) + _unexpected_errors(other)
    codes = Counter(s.code for s in stream.failed)
    print(
        f"\n[{postgres_target()} {outage}] accepted {len(accepted)}, failed submits"
        f" {len(stream.failed)} { ({c.name: n for c, n in codes.items()}) }, running at the stop"
        f" {len(running_at_stop)}, duplicate runs {duplicates}, ran but not acknowledged"
        f" {len(unacknowledged)}, other events { ({r['reason']: r['n'] for r in other_events}) };"
        f" stop {went.down - went.stopping:.2f}s, down {went.up - went.down:.2f}s (start"
        f" {went.up - went.restarting:.2f}s), /readyz 503 x{went.not_ready}, 200"
        f" {went.ready - went.up:.2f}s after the start; all done {drained:.2f}s after the"
        f" stream stopped; notified pickup {pickup * 1000:.0f} ms; INTERNAL answers"
        f" {dict(Counter(r.get('rpc') for r in internal))}"
    )

    # Nothing accepted is lost or stuck; each ran, and only held jobs may have run twice.
    assert counts["DONE"] == len(accepted), (
        f"{len(accepted)} accepted jobs, by status {dict(counts)} after {FINISH_WITHIN_S:g}s"
    )
    assert not never_ran, f"DONE but never ran: {never_ran[:10]}"
    assert duplicates <= CONCURRENCY, f"{duplicates} duplicate runs"
    assert running_at_stop, "no job was running when PostgreSQL went away: the test proved nothing"

    # Submits failed only while the database was away, and as UNAVAILABLE: an asyncpg
    # InternalClientError on a connection PostgreSQL was terminating once answered INTERNAL
    # (see is_database_outage).
    assert not internal, f"RPCs failed with unexpected errors: {internal[:3]}"
    assert set(codes) <= {grpc.StatusCode.UNAVAILABLE}, f"submits failed with {dict(codes)}"
    outside = [
        s
        for s in stream.failed
        if s.answered_at < went.stopping or s.sent_at > went.ready + SETTLE_S
    ]
    assert not outside, f"submits failed while PostgreSQL was up: {outside[:5]}"

    # The notified job was claimed promptly, and not by the fallback poll: the serving
    # replica's last cycle came after the last job's update, and its next poll was due
    # INTERVAL_MS after that cycle.
    assert pickup < PROMPT_S, f"the job submitted on the other replica waited {pickup:.1f}s"
    assert since_activity < INTERVAL_MS / 1000, (
        f"claimed {since_activity:.1f}s after the last activity: a NOTIFY or the poll?"
    )

    assert serving.process.poll() is None
    assert other.process.poll() is None
    assert worker.terminate() == 0
    assert serving.terminate() == 0
    assert other.terminate() == 0
