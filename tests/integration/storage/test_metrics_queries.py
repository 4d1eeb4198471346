"""The queries behind the scrape-time gauges: the oldest pending job's age rides on the queue
depth count (same plan, one scan of jobs), and the ONLINE workers per queue, with the zeros a
"no workers online" alert needs, reach the gauges through `refresh_gauges`.

Times are set by SQL relative to the database's now(), so the ages are checked against bounds
that cannot depend on how fast the test runs (a job made 600 s old is at least 600 s old).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from prometheus_client import Gauge

from jobq.domain.states import JobStatus
from jobq.observability.metrics import ServerMetrics
from jobq.server.server_metrics import refresh_gauges
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.workers import PgWorkerStore
from jobq.storage.queries import query

COUNT_ONLY = """
SELECT queue_name, status, count(*) AS n FROM jobs
WHERE status IN ('PENDING', 'ASSIGNED', 'RUNNING', 'WAITING')
GROUP BY queue_name, status"""
"""jobs_active_depth as it was before it carried the age: the plan to compare with."""


@pytest.fixture
async def db(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db_dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        await pool.execute("INSERT INTO queues (name) VALUES ('mail'), ('idle'), ('later')")
        yield pool
    finally:
        await pool.close()


async def add_jobs(pool: asyncpg.Pool, queue: str, count: int, **columns: str) -> None:
    """`count` jobs in `queue`; `columns` are SQL expressions for other columns."""
    names = ", ".join(["queue_name", *columns])
    values = ", ".join(["$1", *columns.values()])
    await pool.execute(
        f"INSERT INTO jobs ({names}) SELECT {values} FROM generate_series(1, {count})", queue
    )


async def add_worker(pool: asyncpg.Pool, status: str, queues: list[str]) -> None:
    await pool.execute(
        "INSERT INTO workers (worker_id, status, queues) VALUES ($1, $2, $3)",
        uuid.uuid4(),
        status,
        queues,
    )


async def test_oldest_pending_age_counts_from_when_a_job_became_runnable(
    db: asyncpg.Pool,
) -> None:
    ago = "now() - interval '{} seconds'".format
    # default: the oldest runnable job was created 600 s ago; a newer one, and one created
    # 5000 s ago but retried with a backoff that ended 100 s ago (runnable for 100 s only).
    await add_jobs(db, "default", 1, created_at=ago(600))
    await add_jobs(db, "default", 1, created_at=ago(10))
    await add_jobs(db, "default", 1, created_at=ago(5000), not_before=ago(100))
    # Running and held jobs are not waiting, however old.
    await add_jobs(db, "default", 1, created_at=ago(9000), status="'RUNNING'")
    # mail: only a retry due 300 s ago, created long before.
    await add_jobs(db, "mail", 1, created_at=ago(7000), not_before=ago(300))
    # later: only a job delayed into the future: pending, but not waiting yet.
    await add_jobs(db, "later", 2, not_before="now() + interval '1 hour'")

    depth = await PgJobStore(db).jobs_active_depth()

    assert depth.counts == {
        ("default", JobStatus.PENDING): 3,
        ("default", JobStatus.RUNNING): 1,
        ("mail", JobStatus.PENDING): 1,
        ("later", JobStatus.PENDING): 2,
    }
    assert set(depth.oldest_pending_s) == {"default", "mail"}
    assert 600 <= depth.oldest_pending_s["default"] < 5000
    assert 300 <= depth.oldest_pending_s["mail"] < 7000


async def test_workers_online_by_queue_counts_only_online_workers(db: asyncpg.Pool) -> None:
    await add_worker(db, "ONLINE", ["default", "mail"])
    await add_worker(db, "ONLINE", ["default"])
    await add_worker(db, "DRAINING", ["mail"])
    await add_worker(db, "OFFLINE", ["idle"])

    assert await PgWorkerStore(db).workers_online_by_queue() == {"default": 2, "mail": 1}


def gauge_values(gauge: Gauge) -> dict[str, float]:
    return {
        sample.labels["queue"]: sample.value
        for metric in gauge.collect()
        for sample in metric.samples
    }


async def test_refresh_gauges_sets_zeros_for_unserved_and_drained_queues(
    db: asyncpg.Pool,
) -> None:
    metrics = ServerMetrics(process_collectors=False)
    jobs, workers = PgJobStore(db), PgWorkerStore(db)
    await add_jobs(db, "mail", 2, created_at="now() - interval '60 seconds'")
    await add_jobs(db, "default", 1)
    await add_worker(db, "ONLINE", ["default"])

    await refresh_gauges(metrics, jobs, workers)

    online = gauge_values(metrics.queue_workers_online)
    assert online == {"default": 1.0, "mail": 0.0}  # mail: jobs and nobody to run them
    ages = gauge_values(metrics.queue_oldest_pending_age_seconds)
    assert ages.keys() == {"default", "mail"}
    assert ages["mail"] >= 60

    # mail drains, and default's only worker goes away.
    await db.execute("DELETE FROM jobs WHERE queue_name = 'mail'")
    await db.execute("UPDATE workers SET status = 'OFFLINE'")
    await refresh_gauges(metrics, jobs, workers)

    assert gauge_values(metrics.queue_workers_online) == {"default": 0.0, "mail": 0.0}
    assert gauge_values(metrics.queue_oldest_pending_age_seconds)["mail"] == 0.0


def scans(plan: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """Every scan node of a JSON plan: (node type, relation, index)."""
    found = []
    if "Scan" in plan["Node Type"]:
        found.append((plan["Node Type"], plan.get("Relation Name"), plan.get("Index Name")))
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


async def test_the_depth_reads_the_side_tables_and_never_the_history(db: asyncpg.Pool) -> None:
    """Since V22 the depth (with the age) counts ready_jobs, held_jobs and waiting_jobs, whose
    rows are the unfinished jobs: no scan of jobs, so the finished history costs it nothing,
    where the count over jobs (as it was) reads the whole table."""
    # A history of finished jobs beside a backlog, as a server that has run a while has.
    await add_jobs(db, "default", 20_000, status="'DONE'", completed_at="now()")
    await add_jobs(db, "default", 2_000)
    await add_jobs(db, "mail", 500, not_before="now() + interval '1 hour'")
    await add_jobs(db, "mail", 200, status="'RUNNING'")
    await db.execute("VACUUM ANALYZE jobs")
    for table in ("ready_jobs", "held_jobs", "waiting_jobs"):
        await db.execute(f"VACUUM ANALYZE {table}")

    async def plan(sql: str) -> dict[str, Any]:
        [row] = await db.fetch("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql)
        plan: dict[str, Any] = json.loads(row[0])[0]["Plan"]
        return plan

    with_age, count_only = await plan(query("jobs_active_depth")), await plan(COUNT_ONLY)

    read = {relation for _, relation, _ in scans(with_age)}
    assert read <= {"ready_jobs", "held_jobs", "waiting_jobs", None}, scans(with_age)
    assert {"ready_jobs", "held_jobs"} <= read
    # jobs or its partitions (V24)
    assert any((relation or "").startswith("jobs") for _, relation, _ in scans(count_only))

    def blocks(p: dict[str, Any]) -> int:
        return int(p["Shared Hit Blocks"] + p.get("Shared Read Blocks", 0))

    # 2,700 unfinished jobs in narrow rows against 22,700 jobs with payloads: a fraction.
    assert blocks(with_age) * 4 < blocks(count_only), (blocks(with_age), blocks(count_only))
