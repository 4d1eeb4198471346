"""A real jq-server runs the history maintainer: at start-up it makes job_events' partitions for
the days ahead (history.premake_days) and reports them in jq_history_*; a bad history setting
refuses to start, in one line, with exit status 2."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.processes import ServerFactory, free_port

DEADLINE_S = 30.0
PREMAKE_DAYS = 12


async def history_samples(port: int) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        reply = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert reply.status_code == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
        if sample.name.startswith("jq_history_")
    }


async def test_the_server_makes_the_days_ahead_and_reports_them(
    start_server: ServerFactory, db_dsn: str
) -> None:
    port = free_port()
    server = start_server(
        {
            "JQ_DB_DSN": db_dsn,
            "JQ_METRICS_PORT": str(port),
            "JQ_HISTORY_PREMAKE_DAYS": str(PREMAKE_DAYS),
            "JQ_HISTORY_RETENTION_DAYS": "30",
        }
    )
    last: dict[str, float] = {}
    try:
        async with asyncio.timeout(DEADLINE_S):
            while not last.get("jq_history_last_maintenance_success_timestamp_seconds"):
                await asyncio.sleep(0.2)
                last = await history_samples(port)
    except TimeoutError:
        pytest.fail(f"no maintenance run reported within {DEADLINE_S}s: {last}")
    conn = await asyncpg.connect(db_dsn)
    try:
        names = {
            row["relname"]
            for row in await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'job_events'::regclass"
            )
        }
        job_partitions = {
            row["relname"]
            for row in await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'jobs'::regclass"
            )
        }
    finally:
        await conn.close()
    today = datetime.now(UTC).date()
    ahead = {f"job_events_p{today + timedelta(days=n):%Y%m%d}" for n in range(1, PREMAKE_DAYS + 1)}
    assert ahead <= names  # today is the legacy partition's (it ends tomorrow)
    assert {"job_events_legacy", "job_events_default"} <= names
    # jobs' partitions (V24), kept in the same run: today and the days ahead, and the default
    jobs_ahead = {f"jobs_p{today + timedelta(days=n):%Y%m%d}" for n in range(PREMAKE_DAYS + 1)}
    assert jobs_ahead | {"jobs_legacy"} == job_partitions
    # Scraped at most once a second: a fresh scrape after the run shows the partitions made.
    await asyncio.sleep(1.1)
    last = await history_samples(port)
    assert last["jq_history_partitions"] == len(names)
    assert last["jq_history_default_partition_rows"] == 0
    assert last["jq_history_partitions_held_back"] == 0
    assert last["jq_history_partitions_dropped_total"] == 0
    assert last["jq_history_jobs_partitions"] == len(job_partitions)
    assert last["jq_history_jobs_held_back"] == 0
    assert last["jq_history_jobs_partitions_dropped_total"] == 0
    assert (
        abs(
            last["jq_history_last_maintenance_success_timestamp_seconds"]
            - datetime.now(UTC).timestamp()
        )
        < 600
    )
    assert server.terminate() == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("JQ_HISTORY_RETENTION_DAYS", "-1"),
        ("JQ_HISTORY_PREMAKE_DAYS", "0"),
        ("JQ_HISTORY_MAINTENANCE_INTERVAL_S", "soon"),
    ],
)
def test_a_bad_history_setting_refuses_to_start(
    start_server: ServerFactory, db_dsn: str, variable: str, value: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn, variable: value}, wait=False)
    assert server.process.wait(timeout=60) == 2
    lines = server.log().strip().splitlines()
    assert len(lines) == 1, lines
    assert f"(from {variable})" in lines[0]
