"""Schedules end to end: `jq-ctl schedule ...` against real jq-server and jq-worker processes, and
two jq-server replicas sharing one schedule (one job per tick, and the survivor goes on when
one replica dies)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import yaml
from support.ctl import as_json, failure, ok
from support.ctl import jq_ctl_at as jq_ctl
from support.processes import ServerFactory, WorkerFactory


def eventually(condition: Callable[[], Any], within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
    return result


async def _ticks(dsn: str, name: str) -> list[tuple[datetime, str]]:
    """(tick, status) of the schedule's jobs, in tick order."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT schedule_tick, status::text FROM jobs WHERE schedule_name = $1"
            " ORDER BY schedule_tick",
            name,
        )
        return [(row["schedule_tick"], row["status"]) for row in rows]
    finally:
        await conn.close()


async def _wait_ticks(dsn: str, name: str, count: int, within: float = 30) -> list[Any]:
    deadline = time.monotonic() + within
    while len(ticks := await _ticks(dsn, name)) < count:
        assert time.monotonic() < deadline, f"{len(ticks)} of {count} ticks in {within}s"
        await asyncio.sleep(0.1)
    return ticks


def _one_per_tick(ticks: list[tuple[datetime, str]], step: timedelta) -> None:
    """Each tick once, on the schedule's grid (a tick skipped under load is allowed; a tick
    twice is not)."""
    instants = [tick for tick, _ in ticks]
    assert len(instants) == len(set(instants))
    for earlier, later in itertools.pairwise(instants):
        gap = later - earlier
        assert gap >= step
        assert gap % step == timedelta(0)


async def test_schedule_add_runs_jobs_then_remove(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    start_worker(server)
    added = as_json(server, "schedule", "add", "tick", "--every", "1s", "--", "true")
    assert added["schedule"]["interval_seconds"] == 1
    assert added["schedule"]["missed"] == "SKIP"

    ticks = await _wait_ticks(db_dsn, "tick", 3)
    _one_per_tick(ticks, timedelta(seconds=1))
    jobs = eventually(
        lambda: [
            j
            for j in as_json(server, "job", "list", "-n", "100")["jobs"]
            if j.get("schedule_name") == "tick" and j["status"] == "DONE"
        ]
    )
    status_table = ok(jq_ctl(server, "job", "status", jobs[0]["job_id"]))
    assert any(line.split() == ["Schedule", "tick"] for line in status_table.splitlines())

    listed = ok(jq_ctl(server, "schedule", "list")).splitlines()
    assert listed[0].split()[:3] == ["NAME", "WHEN", "QUEUE"]
    assert listed[1].split()[:5] == ["tick", "every", "1s", "default", "active"]
    shown = yaml.safe_load(ok(jq_ctl(server, "-o", "yaml", "schedule", "show", "tick")))
    assert len(shown["schedule"]["upcoming"]) == 5
    assert "Next run" in ok(jq_ctl(server, "schedule", "show", "tick"))

    assert "paused" in ok(jq_ctl(server, "schedule", "pause", "tick"))
    assert as_json(server, "schedule", "show", "tick")["schedule"]["paused"] is True
    assert "resumed" in ok(jq_ctl(server, "schedule", "resume", "tick"))

    assert ok(jq_ctl(server, "schedule", "remove", "tick")) == "schedule 'tick' removed\n"
    assert ok(jq_ctl(server, "schedule", "list")) == "no schedules\n"
    assert failure(jq_ctl(server, "schedule", "show", "tick")) == "schedule 'tick' not found"


async def test_schedule_add_refuses_bad_input(start_server: ServerFactory, db_dsn: str) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    assert "invalid cron expression" in failure(
        jq_ctl(server, "schedule", "add", "x", "--cron", "61 * * * *", "--", "true")
    )
    assert "unknown time zone" in failure(
        jq_ctl(
            server, "schedule", "add", "x", "--cron", "0 9 * * *", "--tz", "Nowhere", "--", "true"
        )
    )
    assert "queue 'nope' not found" in failure(
        jq_ctl(server, "schedule", "add", "x", "--every", "5m", "-q", "nope", "--", "true")
    )
    assert "--cron or --every" in failure(
        jq_ctl(server, "schedule", "add", "x", "--", "true"), code=2
    )
    assert "exactly one of --payload" in failure(
        jq_ctl(server, "schedule", "add", "x", "--every", "5s"), code=2
    )
    assert "whole seconds" in failure(
        jq_ctl(server, "schedule", "add", "x", "--every", "1500ms", "--", "true"), code=2
    )
    assert ok(jq_ctl(server, "schedule", "list")) == "no schedules\n"
    line = ok(
        jq_ctl(
            server,
            "schedule",
            "add",
            "nightly",
            "--cron",
            "0 3 * * *",
            "--tz",
            "Europe/Paris",
            "--missed",
            "once",
            "--payload",
            '{"command": ["true"]}',
        )
    )
    assert line.startswith("schedule 'nightly' added: cron '0 3 * * *' (Europe/Paris) on 'default'")


async def test_two_replicas_enqueue_each_tick_once_and_the_survivor_goes_on(
    start_server: ServerFactory, db_dsn: str
) -> None:
    env = {"JQ_DB_DSN": db_dsn, "JQ_LOGGING_LEVEL": "warning"}
    servers = [start_server(env, wait=False) for _ in range(2)]
    for server in servers:
        server.wait_serving()
    ok(jq_ctl(servers[0], "schedule", "add", "shared", "--every", "1s", "--", "true"))
    before = await _wait_ticks(db_dsn, "shared", 4)
    servers[0].process.kill()  # no goodbye: the other replica's loop carries on alone
    servers[0].process.wait(timeout=10)
    after = await _wait_ticks(db_dsn, "shared", len(before) + 3)
    _one_per_tick(after, timedelta(seconds=1))
    assert all(status == "PENDING" for _, status in after)  # no worker: they wait
