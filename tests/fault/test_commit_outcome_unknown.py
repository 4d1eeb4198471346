"""A connection lost during COMMIT is an outcome jq-server cannot know: the write may have
happened or not. It must not guess. It answers UNAVAILABLE, and the caller sends the same
request again, which the idempotency key (a submit) or the attempt's fencing token (a worker's
result) resolves: the job the first commit created is returned, or the result it recorded is
acknowledged as a duplicate; had the first not committed, the repeat writes it.

jq-server reaches PostgreSQL through commit_cutter.py, which cuts its connection either just
after PostgreSQL committed the marked statement (the answer never arrives) or just before the
statement would have reached it. The failover test (test_patroni_failover.py) meets the same
situation by chance when the primary dies; here it is made to happen, every time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from fault import sink_tasks
from fault.cluster import Cluster
from fault.commit_cutter import CommitCutter
from fault.history import read_sink

from jobq.client import AsyncClient
from jobq.storage.embedded import EmbeddedPostgres


@pytest.fixture
async def cutter(cluster: Cluster, fault_postgres: EmbeddedPostgres) -> AsyncIterator[CommitCutter]:
    """A cutter between the cluster's jq-servers and PostgreSQL (JQ_DB_DSN leads through it)."""
    proxy = CommitCutter(fault_postgres.port).start()
    direct = cluster.server_env["JQ_DB_DSN"]
    cluster.server_env["JQ_DB_DSN"] = direct.replace(
        f"@127.0.0.1:{fault_postgres.port}/", f"@127.0.0.1:{proxy.port}/"
    )
    assert cluster.server_env["JQ_DB_DSN"] != direct, "the DSN does not lead through the cutter"
    try:
        yield proxy
    finally:
        proxy.close()


async def _jobs_with_key(dsn: str, key: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(
            await conn.fetch(
                "SELECT job_id::text AS job_id, status::text AS status FROM jobs"
                " WHERE idempotency_key = $1",
                key,
            )
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("committed", [True, False], ids=["after-commit", "before-commit"])
async def test_submit_whose_connection_dies_at_commit(
    cluster: Cluster, cutter: CommitCutter, committed: bool
) -> None:
    """The submit's connection is cut at its commit; the SDK's repeat with the same key gets
    the job the first commit created (existing) or, had it not committed, creates it. Either
    way one job, under the id the client was given."""
    [server] = await cluster.start_replicas(1)
    key = f"cut-{uuid.uuid4().hex}"
    cutter.arm(key.encode(), after_commit=committed)
    async with AsyncClient(f"127.0.0.1:{server.port}") as client:
        job = await client.submit(sink_tasks.run, str(cluster.sink), key, 0.0, idempotency_key=key)
    assert cutter.cut.is_set(), "the cutter never saw the submit: the test proved nothing"
    stored = await _jobs_with_key(cluster.dsn, key)
    assert [row["job_id"] for row in stored] == [job.id]
    # The repeat found the first commit's job by its key, or wrote the job itself.
    assert job.existing is committed


async def _wait_terminal(dsn: str, job_id: str, within: float) -> str:
    deadline = time.monotonic() + within
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            status = str(
                await conn.fetchval("SELECT status::text FROM jobs WHERE job_id = $1::uuid", job_id)
            )
            if status in ("DONE", "DEAD_LETTERED") or time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def test_result_whose_connection_dies_after_commit(
    cluster: Cluster, cutter: CommitCutter
) -> None:
    """A worker's result is committed but jq-server's connection dies before the answer: the
    worker hears UNAVAILABLE and reports again; the repeat is acknowledged as the duplicate it
    is. The job is DONE once, by its one execution, with one COMPLETED event."""
    [server] = await cluster.start_replicas(1)
    tag = f"result-{uuid.uuid4().hex}"
    async with AsyncClient(f"127.0.0.1:{server.port}") as client:
        job = await client.submit(sink_tasks.run, str(cluster.sink), tag, 0.0)
    # Only the result's statement carries the tag from jq-server to PostgreSQL from now on
    # (the handler returns it): the claim sends the payload the other way.
    cutter.arm(tag.encode(), after_commit=True)
    worker = cluster.start_worker(server, concurrency=1)
    status = await _wait_terminal(cluster.dsn, job.id, within=30.0)
    assert cutter.cut.is_set(), f"the cutter never saw the result (logs: {cluster.base})"
    assert status == "DONE", f"job {status} (logs: {cluster.base})"
    conn = await asyncpg.connect(cluster.dsn)
    try:
        attempt = await conn.fetchval("SELECT attempt FROM jobs WHERE job_id = $1::uuid", job.id)
        reasons = [
            r["reason"]
            for r in await conn.fetch(
                "SELECT reason FROM job_events WHERE job_id = $1::uuid ORDER BY id", job.id
            )
        ]
    finally:
        await conn.close()
    runs = read_sink(cluster.sink).get(tag, [])
    assert len(runs) == 1, f"executions: {runs}"
    assert runs[0].end is not None, f"the execution did not finish: {runs}"
    assert attempt == 1, f"attempt {attempt}: the job ran again"
    assert reasons.count("COMPLETED") == 1, f"events: {reasons}"
    assert worker.process is not None
    assert worker.process.poll() is None, "the worker died"
