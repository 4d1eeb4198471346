"""AdminService's schedule RPCs over real gRPC against a real database, and the SDK's schedule
methods: each success path, and each refusal with a clear message and nothing changed."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from support.payloads import job_payload
from support.server_harness import Client, running_server

import jobq
from jobq.client import InvalidJob, command_job, handler_job
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import schedules_pb2 as spb
from jobq.server.app import ServerApp

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXISTS = grpc.StatusCode.ALREADY_EXISTS


@pytest.fixture
async def served(db_dsn: str) -> AsyncIterator[tuple[ServerApp, Client]]:
    async with running_server(db_dsn) as (app, connected):
        yield app, connected


@pytest.fixture
def client(served: tuple[ServerApp, Client]) -> Client:
    return served[1]


async def _fails(call: Awaitable[Any], code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is code, caught.value.details()
    details = caught.value.details() or ""
    assert "Traceback" not in details
    return details


def _request(name: str = "nightly", **fields: Any) -> spb.CreateScheduleRequest:
    if "cron" not in fields and "interval_seconds" not in fields:
        fields["cron"] = "0 3 * * *"
    fields.setdefault("payload", job_payload(name))
    return spb.CreateScheduleRequest(name=name, **fields)


async def _create(client: Client, **fields: Any) -> spb.Schedule:
    reply = await client.admin.CreateSchedule(_request(**fields), timeout=5)
    return reply.schedule


async def _names(client: Client) -> list[str]:
    reply = await client.admin.ListSchedules(spb.ListSchedulesRequest(), timeout=5)
    return [schedule.name for schedule in reply.schedules]


async def test_create_list_get_pause_resume_delete(client: Client) -> None:
    created = await _create(client, time_zone="Europe/Paris", priority=4, max_retries=1)
    assert (created.cron, created.time_zone, created.queue_name) == (
        "0 3 * * *",
        "Europe/Paris",
        "default",
    )
    assert created.missed == spb.MISSED_TICK_POLICY_SKIP  # the default
    assert (created.priority, created.max_retries, created.paused) == (4, 1, False)
    next_run = created.next_run_at.ToDatetime(tzinfo=UTC)
    assert next_run > datetime.now(UTC)
    assert next_run.astimezone(ZoneInfo("Europe/Paris")).hour == 3
    assert not created.HasField("last_run_at")

    await _create(client, name="ping", interval_seconds=30, missed=spb.MISSED_TICK_POLICY_ONCE)
    assert await _names(client) == ["nightly", "ping"]

    got = (
        await client.admin.GetSchedule(spb.GetScheduleRequest(name="nightly"), timeout=5)
    ).schedule
    upcoming = [t.ToDatetime(tzinfo=UTC) for t in got.upcoming]
    assert upcoming[0] == next_run
    assert len(upcoming) == 5
    assert all(
        b - a in (timedelta(hours=23), timedelta(hours=24), timedelta(hours=25))
        for a, b in itertools.pairwise(upcoming)
    )

    paused = await client.admin.PauseSchedule(spb.PauseScheduleRequest(name="ping"), timeout=5)
    assert paused.schedule.paused
    again = await client.admin.PauseSchedule(spb.PauseScheduleRequest(name="ping"), timeout=5)
    assert again.schedule.paused  # idempotent
    resumed = await client.admin.ResumeSchedule(spb.ResumeScheduleRequest(name="ping"), timeout=5)
    assert not resumed.schedule.paused
    assert resumed.schedule.next_run_at.ToDatetime(tzinfo=UTC) > datetime.now(UTC) - timedelta(
        seconds=1
    )

    await client.admin.DeleteSchedule(spb.DeleteScheduleRequest(name="ping"), timeout=5)
    assert await _names(client) == ["nightly"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "invalid schedule name"),
        ({"name": "no spaces"}, "invalid schedule name"),
        ({"name": "x" * 129}, "invalid schedule name"),
        ({"cron": "* * * *"}, "give five fields"),
        ({"cron": "* * * * * *"}, "give five fields"),
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"cron": "@hourly"}, "give five fields"),
        ({"cron": "* * * * *", "time_zone": "Mars/Olympus"}, "unknown time zone"),
        ({"cron": "* * * * *", "time_zone": "../../etc/passwd"}, "unknown time zone"),
        ({"cron": "* * * * *", "interval_seconds": 5}, "not both"),
        ({"cron": "", "interval_seconds": 0}, "not neither"),
        ({"interval_seconds": -1}, "interval_seconds must be between"),
        ({"interval_seconds": 10, "time_zone": "UTC"}, "time_zone applies to cron"),
        ({"payload": b"not json"}, "payload"),
        ({"payload": b'{"handler": "x:y", "timeout": 3}'}, "payload"),
        ({"payload": b""}, "payload"),
        ({"priority": 10}, "priority must be between"),
        ({"max_retries": 1001}, "max_retries must be between"),
        ({"queue_name": "bad queue"}, "invalid queue name"),
        ({"missed": 7}, "unknown missed-tick policy"),
    ],
)
async def test_bad_input_is_refused_and_creates_nothing(
    client: Client, fields: dict[str, Any], message: str
) -> None:
    name = fields.pop("name", "nightly")
    details = await _fails(
        client.admin.CreateSchedule(_request(name, **fields), timeout=5), INVALID
    )
    assert message in details
    assert await _names(client) == []


async def test_unknown_queue_taken_name_and_unknown_schedule(client: Client) -> None:
    details = await _fails(
        client.admin.CreateSchedule(_request(queue_name="nope"), timeout=5), NOT_FOUND
    )
    assert "queue 'nope' not found" in details
    await _create(client)
    details = await _fails(
        client.admin.CreateSchedule(_request(cron="* * * * *"), timeout=5), EXISTS
    )
    assert "schedule 'nightly' already exists" in details
    assert (
        await client.admin.GetSchedule(spb.GetScheduleRequest(name="nightly"))
    ).schedule.cron == ("0 3 * * *")
    for call in (
        client.admin.GetSchedule(spb.GetScheduleRequest(name="other"), timeout=5),
        client.admin.DeleteSchedule(spb.DeleteScheduleRequest(name="other"), timeout=5),
        client.admin.PauseSchedule(spb.PauseScheduleRequest(name="other"), timeout=5),
        client.admin.ResumeSchedule(spb.ResumeScheduleRequest(name="other"), timeout=5),
    ):
        assert "schedule 'other' not found" in await _fails(call, NOT_FOUND)
    details = await _fails(
        client.admin.DeleteSchedule(spb.DeleteScheduleRequest(name="a b"), timeout=5), INVALID
    )
    assert "invalid schedule name" in details


async def test_changes_are_in_the_audit_trail(client: Client) -> None:
    await _create(client)
    await _fails(client.admin.CreateSchedule(_request(cron="bad"), timeout=5), INVALID)
    await client.admin.PauseSchedule(spb.PauseScheduleRequest(name="nightly"), timeout=5)
    await client.admin.ResumeSchedule(spb.ResumeScheduleRequest(name="nightly"), timeout=5)
    await client.admin.DeleteSchedule(spb.DeleteScheduleRequest(name="nightly"), timeout=5)
    reply = await client.admin.ListAuditEvents(apb.ListAuditEventsRequest(limit=10), timeout=5)
    seen = [(e.action, e.outcome.split(":")[0]) for e in reversed(reply.events)]
    assert seen == [
        ("schedule.create", "ok"),
        ("schedule.create", "INVALID_ARGUMENT"),
        ("schedule.pause", "ok"),
        ("schedule.resume", "ok"),
        ("schedule.delete", "ok"),
    ]


async def test_a_tick_enqueues_a_job_that_names_its_schedule(client: Client) -> None:
    """The server's own runner, on the real clock: a 1 s interval ticks within a few seconds."""
    await _create(client, name="every-second", interval_seconds=1)
    async with asyncio.timeout(15):
        while True:
            listed = await client.jobs.ListJobs(jpb.ListJobsRequest(limit=10), timeout=5)
            if listed.jobs:
                break
            await asyncio.sleep(0.05)
    job_id = listed.jobs[0].job_id
    status = await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=5)
    assert status.job.schedule_name == "every-second"
    assert listed.jobs[0].schedule_name == "every-second"
    submitted = await client.jobs.SubmitJob(
        jpb.SubmitJobRequest(queue_name="default", payload=job_payload()), timeout=5
    )
    plain = await client.jobs.GetJobStatus(
        jpb.GetJobStatusRequest(job_id=submitted.job_id), timeout=5
    )
    assert plain.job.schedule_name == ""


async def test_the_sdk_creates_lists_pauses_resumes_and_deletes(
    served: tuple[ServerApp, Client],
) -> None:
    app, _ = served
    async with jobq.AsyncClient(f"127.0.0.1:{app.grpc_port}") as sdk:
        created = await sdk.create_schedule(
            "report",
            handler_job("app.tasks:report", args=[1]),
            cron="30 6 * * 1-5",
            time_zone="America/New_York",
            missed="once",
        )
        assert (created.cron, created.time_zone, created.every, created.missed) == (
            "30 6 * * 1-5",
            "America/New_York",
            None,
            "once",
        )
        await sdk.create_schedule("ping", command_job(["true"]), every=timedelta(minutes=5))
        assert [s.name for s in await sdk.list_schedules()] == ["ping", "report"]
        shown = await sdk.get_schedule("ping")
        assert shown.every == 300
        assert len(shown.upcoming) == 5
        assert (await sdk.pause_schedule("ping")).paused
        assert not (await sdk.resume_schedule("ping")).paused
        await sdk.delete_schedule("ping")
        assert [s.name for s in await sdk.list_schedules()] == ["report"]
        with pytest.raises(jobq.CallFailed, match="not found"):
            await sdk.get_schedule("ping")
        with pytest.raises(InvalidJob, match="not both"):
            await sdk.create_schedule("x", command_job(["true"]), cron="* * * * *", every=5)

    def sync_calls() -> list[str]:
        with jobq.Client(f"127.0.0.1:{app.grpc_port}") as sync:
            sync.create_schedule("sync", command_job(["true"]), every=60)
            names = [s.name for s in sync.list_schedules()]
            sync.delete_schedule("sync")
            return names

    assert await asyncio.to_thread(sync_calls) == ["report", "sync"]
