"""Lifecycle events on a real Kafka-protocol broker, from the real programs (SPEC §12, §13).

Real `jq-server` and `jq-worker` processes on a test database and a Tansu broker on loopback.
The `job_events` table is the truth: every row must reach the broker as one message on the
topic SPEC §12 names for its new status, keyed by the job, carrying the serialized JobEvent and
the event id and correlation id headers, and a job's messages in one partition come in event-id
order. Exactly once while nothing fails; at least once (duplicates identical) when the
publishing replica is killed; nothing lost when the broker is away, and no job slowed either.
`--dry-run` shows that the SASL and TLS settings reach the client it checks, without printing
the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from support.ctl import as_json
from support.kafka_broker import KafkaBroker, running_kafka_broker, start_kafka_broker
from support.kafka_events import EventReader, Published
from support.processes import (
    ServerFactory,
    ServerProcess,
    WorkerFactory,
    free_port,
    program,
)
from support.server_harness import Client, client_for

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.server.event_publisher import LEASE_S

PREFIX = "e2e."

TOPIC_OF = {
    "PENDING": "job.submitted",
    "ASSIGNED": "job.submitted",
    "RUNNING": "job.started",
    "DONE": "job.completed",
    "FAILED": "job.failed",
    "DEAD_LETTERED": "job.dead-lettered",
}
"""SPEC §12's mapping, written out again here rather than imported from jobq.events.topics."""

TASKS = "support.e2e_tasks"
NOOP = json.dumps({"handler": f"{TASKS}:noop"}).encode()

FAST_SCHEDULER = {
    "JQ_SCHEDULER_INTERVAL_MS": "100",
    "JQ_SCHEDULER_RETRY_BASE_DELAY_S": "0.05",
    "JQ_SCHEDULER_RETRY_MAX_DELAY_S": "0.2",
    "JQ_SCHEDULER_WORKER_HEARTBEAT_TIMEOUT_S": "2",
    "JQ_SCHEDULER_HEARTBEAT_CHECK_INTERVAL_S": "0.25",
    "JQ_SCHEDULER_ASSIGNMENT_TIMEOUT_S": "5",
}
"""Retries after a fraction of a second, a silent worker lost after 2 s (workers heartbeat every
0.5 s in these tests: support.processes.worker_environment)."""

TAKEOVER_SLACK_S = 3.0
"""Beyond LEASE_S, what a takeover may take: a pass interval, a batch, a loaded machine."""

EVENT_ROWS = """
SELECT e.id, e.job_id::text AS job_id, j.queue_name, e.from_status::text AS from_status,
       e.to_status::text AS to_status, e.worker_id::text AS worker_id, e.reason, e.detail,
       e.attempt, e.occurred_at, j.correlation_id
FROM job_events e JOIN jobs j USING (job_id)
WHERE $1::uuid[] IS NULL OR e.job_id = ANY ($1::uuid[])
ORDER BY e.id
"""


# --- the parts ---------------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    with running_kafka_broker(tmp_path / "kafka") as running:
        yield running


@pytest.fixture
def reader(broker: KafkaBroker) -> Iterator[EventReader]:
    events = EventReader(broker.bootstrap_servers, PREFIX)
    yield events
    events.close()


def server_env(dsn: str, broker: KafkaBroker, **extra: str) -> dict[str, str]:
    return {
        "JQ_DB_DSN": dsn,
        "JQ_KAFKA_ENABLED": "true",
        "JQ_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "JQ_KAFKA_TOPIC_PREFIX": PREFIX,
        **FAST_SCHEDULER,
        **extra,
    }


# --- the database ------------------------------------------------------------------------------


async def fetch(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def count(dsn: str, query: str) -> int:
    """The number a `SELECT count(*) ...` returns."""
    conn = await asyncpg.connect(dsn)
    try:
        found: int = await conn.fetchval(query)
        return found
    finally:
        await conn.close()


async def event_rows(dsn: str, job_ids: Sequence[str] | None = None) -> list[asyncpg.Record]:
    """job_events rows (all, or those of `job_ids`) with what their message carries."""
    return await fetch(dsn, EVENT_ROWS, None if job_ids is None else list(job_ids))


async def eventually(
    condition: Callable[[], Awaitable[Any]], within: float, what: str, every: float = 0.1
) -> Any:
    """The first truthy value of `condition()`, polled until `within` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what} (last: {value!r})")
        await asyncio.sleep(every)


async def outbox_drained(
    dsn: str, servers: Sequence[ServerProcess] = (), within: float = 30.0
) -> None:
    """Wait until every captured event was acknowledged; on failure, say what waits, who holds
    the lease and what the servers logged about Kafka."""

    async def empty() -> bool:
        return await count(dsn, "SELECT count(*) FROM event_outbox") == 0

    try:
        await eventually(empty, within, "event_outbox is empty")
    except AssertionError as exc:
        waiting = await fetch(
            dsn,
            "SELECT o.event_id, e.job_id, e.to_status, e.reason"
            " FROM (SELECT unnest(event_ids) AS event_id FROM event_outbox) o"
            " LEFT JOIN job_events e ON e.id = o.event_id ORDER BY o.event_id LIMIT 10",
        )
        lease = await fetch(dsn, "SELECT *, clock_timestamp() AS now FROM event_publishers")
        logged = [
            line
            for server in servers
            for line in server.log().splitlines()
            if '"jobq.events"' in line or '"jobq.kafka"' in line
        ]
        raise AssertionError(
            f"{exc}\nwaiting: {[dict(r) for r in waiting]}\nlease: {[dict(r) for r in lease]}"
            "\nlogged:\n" + "\n".join(logged[-30:])
        ) from None


async def wait_jobs(dsn: str, expected: Mapping[str, str], within: float) -> None:
    """Wait until every job of `expected` (job id → status) is in its status."""

    async def current() -> dict[str, str]:
        rows = await fetch(
            dsn,
            "SELECT job_id::text, status::text FROM jobs WHERE job_id = ANY ($1::uuid[])",
            list(expected),
        )
        return {row["job_id"]: row["status"] for row in rows}

    deadline = time.monotonic() + within
    while (now := await current()) != dict(expected):
        if time.monotonic() > deadline:
            wrong = {job: (now.get(job), status) for job, status in expected.items()}
            wrong = {job: pair for job, pair in wrong.items() if pair[0] != pair[1]}
            raise AssertionError(f"after {within} s, jobs (now, expected): {wrong}")
        await asyncio.sleep(0.1)


# --- submitting --------------------------------------------------------------------------------


def command(*argv: str) -> bytes:
    return json.dumps({"command": list(argv)}).encode()


def once_then_hang(marker: Path) -> bytes:
    """A command that hangs at its first attempt (after creating `marker`) and succeeds at
    once at any later one: long on the worker that gets killed, short on its rescuer."""
    script = 'if [ -e "$1" ]; then exit 0; fi; : > "$1"; exec sleep 120'
    return command("sh", "-c", script, "sh", str(marker))


def fails_once(marker: Path) -> bytes:
    script = 'if [ -e "$1" ]; then exit 0; fi; : > "$1"; echo "first attempt" >&2; exit 3'
    return command("sh", "-c", script, "sh", str(marker))


ALWAYS_FAILS = command("sh", "-c", "echo always >&2; exit 3")


async def submit(
    client: Client, payload: bytes, queue: str = "default", correlation_id: str = "", **fields: Any
) -> str:
    metadata = (("x-correlation-id", correlation_id),) if correlation_id else None
    reply = await client.jobs.SubmitJob(
        jpb.SubmitJobRequest(queue_name=queue, payload=payload, **fields),
        metadata=metadata,
        timeout=10,
    )
    return str(reply.job_id)


async def submit_many(client: Client, payload: bytes, count: int) -> list[str]:
    request = jpb.SubmitJobsRequest(
        jobs=[jpb.SubmitJobRequest(queue_name="default", payload=payload)] * count
    )
    reply = await client.jobs.SubmitJobs(request, timeout=30)
    return list(reply.job_ids)


async def create_queue(client: Client, name: str, **limits: int) -> None:
    await client.admin.CreateQueue(apb.CreateQueueRequest(name=name, **limits), timeout=10)


# --- what the broker holds, against job_events ---------------------------------------------------


def status_name(value: int) -> str | None:
    if value == cpb.JOB_STATUS_UNSPECIFIED:
        return None
    return cpb.JobStatus.Name(value).removeprefix("JOB_STATUS_")


def message_fields(message: Published) -> dict[str, Any]:
    event = message.event
    return {
        "topic": message.topic,
        "key": message.key,
        "headers": message.headers,
        "id": event.id,
        "job_id": event.job_id,
        "queue_name": event.queue_name,
        "from_status": status_name(event.from_status),
        "to_status": status_name(event.to_status),
        "worker_id": event.worker_id,
        "reason": event.reason,
        "detail": event.detail,
        "attempt": event.attempt,
        "occurred_at": event.occurred_at.ToDatetime(tzinfo=UTC),
    }


def row_fields(row: asyncpg.Record) -> dict[str, Any]:
    """What the message of a job_events row must carry (SPEC §12)."""
    return {
        "topic": PREFIX + TOPIC_OF[row["to_status"]],
        "key": row["job_id"],
        "headers": {
            "jobq-event-id": str(row["id"]),
            "jobq-correlation-id": row["correlation_id"] or row["job_id"],
        },
        "id": row["id"],
        "job_id": row["job_id"],
        "queue_name": row["queue_name"],
        "from_status": row["from_status"],
        "to_status": row["to_status"],
        "worker_id": row["worker_id"] or "",
        "reason": row["reason"],
        "detail": row["detail"] or "",
        "attempt": row["attempt"] or 0,
        "occurred_at": row["occurred_at"],
    }


def by_event_id(published: Sequence[Published]) -> dict[int, list[Published]]:
    found: dict[int, list[Published]] = defaultdict(list)
    for message in sorted(published, key=lambda p: (p.topic, p.partition, p.offset)):
        found[message.event_id].append(message)
    return found


def assert_exactly_once(published: Sequence[Published], rows: Sequence[asyncpg.Record]) -> None:
    """One message per job_events row, carrying that row, and no other message."""
    counts = Counter(p.event_id for p in published)
    assert {i: n for i, n in counts.items() if n > 1} == {}, "events published twice"
    assert sorted(counts) == [row["id"] for row in rows]
    found = by_event_id(published)
    for row in rows:
        assert message_fields(found[row["id"]][0]) == row_fields(row)


def assert_at_least_once(published: Sequence[Published], rows: Sequence[asyncpg.Record]) -> int:
    """Every job_events row published, nothing else; copies identical. Returns the number of
    duplicate messages."""
    found = by_event_id(published)
    missing = [row["id"] for row in rows if row["id"] not in found]
    assert not missing, f"{len(missing)} of {len(rows)} events never published: {missing[:20]}"
    assert set(found) == {row["id"] for row in rows}, "messages of events that do not exist"
    for row in rows:
        first, *copies = found[row["id"]]
        assert message_fields(first) == row_fields(row)
        for copy in copies:
            assert (copy.topic, copy.partition, copy.key, copy.headers) == (
                first.topic,
                first.partition,
                first.key,
                first.headers,
            )
            assert copy.event == first.event
    return sum(len(copies) - 1 for copies in found.values())


def assert_per_job_order(published: Sequence[Published]) -> None:
    """Within each topic partition, a job's events come in id order (a re-sent copy may repeat
    earlier ones: their first appearances are in order)."""
    streams: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    offsets: set[tuple[str, int, int]] = set()
    for message in sorted(published, key=lambda p: (p.topic, p.partition, p.offset)):
        assert (message.topic, message.partition, message.offset) not in offsets
        offsets.add((message.topic, message.partition, message.offset))
        streams[(message.key, message.topic, message.partition)].append(message.event_id)
    for stream, ids in streams.items():
        first_seen = list(dict.fromkeys(ids))
        assert first_seen == sorted(first_seen), f"{stream} out of order: {ids}"


async def read_everything(
    reader: EventReader, event_ids: set[int], within: float = 60.0
) -> list[Published]:
    """Read until every event of `event_ids` is in, then until everything the broker holds in
    the job topics is (copies included)."""

    def all_in(got: list[Published]) -> bool:
        return event_ids <= {p.event_id for p in got}

    await asyncio.to_thread(reader.read_until, all_in, within)
    await asyncio.to_thread(reader.read_until, lambda got: len(got) >= reader.stored_count(), 15)
    return list(reader.events)


def per_job(published: Sequence[Published]) -> dict[str, list[cpb.JobEvent]]:
    """Each job's events, in id order, first copies only."""
    jobs: dict[str, list[cpb.JobEvent]] = defaultdict(list)
    for _event_id, copies in sorted(by_event_id(published).items()):
        event = copies[0].event
        jobs[event.job_id].append(event)
    return jobs


# --- 1. everything a job can go through, one for one ------------------------------------------


async def test_a_mixed_workload_is_published_one_message_per_event(
    start_server: ServerFactory,
    start_worker: WorkerFactory,
    db_dsn: str,
    broker: KafkaBroker,
    reader: EventReader,
    tmp_path: Path,
) -> None:
    server = start_server(server_env(db_dsn, broker))
    client = client_for(server.grpc_port)
    try:
        await create_queue(client, "flaky", max_retries=2)
        await create_queue(client, "long")
        await create_queue(client, "fragile", max_interruptions=0)
        await create_queue(client, "parked")  # no worker serves it

        # Long jobs on a worker alone, which will be SIGKILLed while it runs them.
        doomed = start_worker(server, "--concurrency", "4", "--queues", "long,fragile")
        markers = [tmp_path / f"long-{i}" for i in range(3)]
        long_jobs = [
            await submit(client, once_then_hang(marker), "long", f"long-{i}")
            for i, marker in enumerate(markers)
        ]
        poison_marker = tmp_path / "fragile"
        poison = await submit(client, once_then_hang(poison_marker), "fragile")
        await wait_jobs(db_dsn, dict.fromkeys([*long_jobs, poison], "RUNNING"), 30)

        async def hanging() -> bool:
            return all(m.exists() for m in [*markers, poison_marker])

        await eventually(hanging, 15, "the long jobs' processes started")

        # Everything else, on a second worker.
        start_worker(
            server,
            "--concurrency",
            "8",
            "--queues",
            "default,flaky,long,fragile",
            "--import",
            TASKS,
        )
        succeeded = [
            await submit(client, json.dumps({"handler": f"{TASKS}:add", "args": [i, 1]}).encode())
            for i in range(4)
        ] + [await submit(client, command("true"), correlation_id="order-4711")]
        retried_ok = await submit(client, fails_once(tmp_path / "flaky"), "flaky", "flaky-1")
        exhausted = await submit(client, ALWAYS_FAILS, "flaky")
        exhausted_by_job_limit = await submit(client, ALWAYS_FAILS, max_retries=1)
        refused = await submit(
            client, json.dumps({"handler": "os:system", "args": ["true"]}).encode()
        )
        cancelled = [await submit(client, NOOP, "parked") for _ in range(3)]
        for job in cancelled:
            await client.jobs.CancelJob(jpb.CancelJobRequest(job_id=job), timeout=10)

        doomed.process.kill()
        doomed.process.wait(timeout=10)

        final = {
            **dict.fromkeys([*succeeded, retried_ok, *long_jobs], "DONE"),
            **dict.fromkeys([exhausted, exhausted_by_job_limit, refused], "DEAD_LETTERED"),
            **dict.fromkeys([*cancelled, poison], "DEAD_LETTERED"),
        }
        await wait_jobs(db_dsn, final, 60)
        await outbox_drained(db_dsn, [server])
        rows = await event_rows(db_dsn)
        published = await read_everything(reader, {row["id"] for row in rows})

        assert_exactly_once(published, rows)
        assert_per_job_order(published)

        # The workload went through every kind of transition, and the messages say so.
        topics = {p.topic for p in published}
        assert topics == {PREFIX + name for name in TOPIC_OF.values()}
        jobs = per_job(published)
        assert set(jobs) == set(final)
        for job, status in final.items():
            assert status_name(jobs[job][-1].to_status) == status, job
        reasons = {job: [e.reason for e in events] for job, events in jobs.items()}
        assert reasons[retried_ok].count("FAILED") == 1
        assert reasons[retried_ok].count("RETRY") == 1
        assert reasons[exhausted].count("FAILED") == 3
        assert reasons[exhausted][-1] == "RETRIES_EXHAUSTED"
        assert reasons[exhausted_by_job_limit].count("FAILED") == 2
        assert reasons[exhausted_by_job_limit][-1] == "RETRIES_EXHAUSTED"
        assert reasons[refused][-1] == "REFUSED"
        for job in cancelled:
            assert reasons[job] == ["SUBMITTED", "CANCELLED"]
        assert reasons[poison][-1] == "POISON"
        for job in long_jobs:
            events = jobs[job]
            [started_first, *_] = [e for e in events if e.reason == "STARTED"]
            lost = [e for e in events if e.reason == "WORKER_LOST"]
            assert lost, reasons[job]
            assert {e.worker_id for e in lost} == {started_first.worker_id}
            assert events[-1].reason == "COMPLETED"
            assert events[-1].worker_id not in ("", started_first.worker_id)
        correlated = {p.key: p.headers["jobq-correlation-id"] for p in published}
        assert correlated[succeeded[-1]] == "order-4711"
        assert correlated[long_jobs[1]] == "long-1"
        assert correlated[retried_ok] == "flaky-1"

        # Heartbeats of the worker that finished the long jobs, on their own topic.
        rescuer = jobs[long_jobs[0]][-1].worker_id

        def rescuer_beats(_: list[Published]) -> bool:
            return any(beat.worker_id == rescuer for beat in reader.heartbeats)

        await asyncio.to_thread(reader.read_until, rescuer_beats, 15)
    finally:
        await client.channel.close()


# --- 2. the publishing replica dies ------------------------------------------------------------


class SubmitStream:
    """Submits `batch` no-op jobs every `every` seconds, round robin over `targets`; a target
    taken out of the list may fail its last call."""

    def __init__(self, targets: list[Client], batch: int = 10, every: float = 0.1) -> None:
        self.targets = targets
        self.batch = batch
        self.every = every
        self.submitted = 0
        self.lost_calls = 0

    async def run(self) -> None:
        turn = 0
        while True:
            client = self.targets[turn % len(self.targets)]
            turn += 1
            try:
                await submit_many(client, NOOP, self.batch)
                self.submitted += self.batch
            except grpc.aio.AioRpcError:
                if client in self.targets:
                    raise
                self.lost_calls += 1
            await asyncio.sleep(self.every)  # the stream's pace, not a wait for a state


def parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def replica_of(owner: str, servers: Sequence[ServerProcess]) -> ServerProcess:
    """The jq-server whose process (or one of its descendants) holds the publisher lease:
    the owner string is "hostname/pid/random"."""
    pid: int | None = int(owner.split("/")[1])
    holder = pid
    while pid is not None and pid > 1:
        for server in servers:
            if server.process.pid == pid:
                return server
        pid = parent_pid(pid)
    raise AssertionError(f"lease owner {owner}: process {holder} belongs to no jq-server")


def descendants(pid: int) -> list[int]:
    """The live descendants of process `pid`, children before their own children."""
    parents: dict[int, int] = {}
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit() and (ppid := parent_pid(int(entry.name))) is not None:
                parents[int(entry.name)] = ppid
    found: list[int] = []
    generation = [pid]
    while generation:
        generation = [child for child, ppid in parents.items() if ppid in generation]
        found += generation
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def publisher_started_lines(server: ServerProcess) -> list[dict[str, Any]]:
    lines = []
    for text in server.log().splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and line.get("action") == "events.publisher_started":
            lines.append(line)
    return lines


@pytest.mark.parametrize("kill", ["server", "replica"])
async def test_killing_the_publishing_replica_loses_no_event(
    kill: str,
    start_server: ServerFactory,
    start_worker: WorkerFactory,
    db_dsn: str,
    broker: KafkaBroker,
    reader: EventReader,
    record_property: Callable[[str, object], None],
) -> None:
    env = server_env(db_dsn, broker)
    servers = [start_server(env, wait=False) for _ in range(2)]
    for server in servers:
        server.wait_serving()
    for server in servers:
        start_worker(server, "--concurrency", "8", "--import", TASKS)
    clients = [client_for(server.grpc_port) for server in servers]
    stream = SubmitStream(list(clients))
    streaming = asyncio.create_task(stream.run())
    try:

        async def lease() -> asyncpg.Record | None:
            rows = await fetch(
                db_dsn,
                "SELECT owner, published FROM event_publishers"
                " WHERE name = 'kafka' AND owner IS NOT NULL",
            )
            return rows[0] if rows else None

        holder = await eventually(lease, 15, "a replica holds the publisher lease")

        async def publishing_mid_stream() -> asyncpg.Record | None:
            current = await lease()
            waiting = await count(db_dsn, "SELECT count(*) FROM event_outbox")
            busy = current is not None and current["published"] >= 400 and waiting > 0
            return current if busy else None

        holder = await eventually(publishing_mid_stream, 30, "the holder publishes the stream")
        owner = holder["owner"]
        holder_pid = int(owner.split("/")[1])
        victim = replica_of(owner, servers)
        [survivor] = [s for s in servers if s is not victim]
        stream.targets = [clients[servers.index(survivor)]]
        # "server": SIGKILL the jq-server process; whatever it started may still give the lease
        # back. "replica": SIGKILL its descendants (a publisher process of its own, say) first,
        # then it: a whole replica gone at once (a node, a container), which gives nothing back.
        doomed = [victim.process.pid]
        if kill == "replica":
            doomed = [*reversed(descendants(victim.process.pid)), *doomed]
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        victim.process.wait(timeout=10)

        # The survivor takes the lease once it runs out, and publishes.
        taken_at: float | None = None
        new_owner = ""
        published_then = 0
        first_publish_at: float | None = None
        while first_publish_at is None:
            elapsed = time.monotonic() - killed_at
            assert elapsed < LEASE_S + 10, (
                f"no takeover {elapsed:.1f} s after the kill; the lease holder's process "
                f"{holder_pid} is {'still alive' if alive(holder_pid) else 'gone'}"
            )
            current = await lease()
            if current is None:
                pass  # the victim's lease ran out; nobody holds it yet
            elif taken_at is None and current["owner"] != owner:
                taken_at, new_owner = time.monotonic(), current["owner"]
                published_then = current["published"]
            elif taken_at is not None and current["published"] > published_then:
                first_publish_at = time.monotonic()
            await asyncio.sleep(0.02)
        assert taken_at is not None
        takeover_s = first_publish_at - killed_at
        record_property("lease_taken_after_kill_s", round(taken_at - killed_at, 3))
        record_property("first_publish_after_kill_s", round(takeover_s, 3))
        print(
            f"takeover: lease taken {taken_at - killed_at:.2f} s and first publish "
            f"{takeover_s:.2f} s after the SIGKILL of the {kill} (LEASE_S = {LEASE_S})"
        )
        assert replica_of(new_owner, servers) is survivor

        async def holder_gone() -> bool:
            return not alive(holder_pid)

        await eventually(holder_gone, 5, f"the lease holder's process {holder_pid} is gone")
        assert takeover_s < LEASE_S + TAKEOVER_SLACK_S

        # The stream goes on a little through the survivor, then every job runs to its end
        # (those the victim's worker held are rescued once that worker is declared lost).
        async def more_through_the_survivor(after: int = stream.submitted) -> bool:
            return stream.submitted >= after + 100

        await eventually(more_through_the_survivor, 15, "the stream goes on through the survivor")
        streaming.cancel()
        await asyncio.gather(streaming, return_exceptions=True)

        async def all_done() -> bool:
            left = await count(db_dsn, "SELECT count(*) FROM jobs WHERE status <> 'DONE'")
            return left == 0

        await eventually(all_done, 90, "every job of the stream is DONE")
        jobs = await count(db_dsn, "SELECT count(*) FROM jobs")
        assert jobs >= stream.submitted
        await outbox_drained(db_dsn, servers)
        rows = await event_rows(db_dsn)
        published = await read_everything(reader, {row["id"] for row in rows})

        duplicates = assert_at_least_once(published, rows)
        assert_per_job_order(published)
        record_property("duplicate_messages", duplicates)
        print(
            f"{len(rows)} events of {jobs} jobs, {duplicates} duplicate message(s); "
            f"{stream.lost_calls} submit call(s) cut by the kill"
        )

        started = publisher_started_lines(survivor)
        assert started, "the survivor never logged events.publisher_started"
        # From the victim's lease once it ran out, or from nobody if something gave it back.
        assert started[-1].get("took_over_from") in (owner, None)
    finally:
        streaming.cancel()
        await asyncio.gather(streaming, return_exceptions=True)
        for client in clients:
            await client.channel.close()


# --- 3. the broker goes away -------------------------------------------------------------------

OUTAGE_JOBS = 1000


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def outbox_lag_metric(metrics_port: int) -> float:
    status, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200
    match = re.search(r"^jq_events_outbox_lag_events (\S+)$", text, re.MULTILINE)
    assert match, "no jq_events_outbox_lag_events in /metrics"
    return float(match.group(1))


def kafka_component(server: ServerProcess) -> dict[str, str]:
    """The kafka line of `jq-ctl system status`: name, state, detail."""
    status = as_json(server, "system", "status")
    [kafka] = [c for c in status["components"] if c["name"] == "kafka"]
    return {key: str(value) for key, value in kafka.items()}


@dataclass
class Outage:
    """A jq-server (health and metrics endpoints on) and a jq-worker, which ran OUTAGE_JOBS
    no-op jobs to DONE while the broker was down; `rows` are their job_events."""

    broker: KafkaBroker
    server: ServerProcess
    client: Client
    health_port: int
    metrics_port: int
    job_ids: list[str]
    rows: list[asyncpg.Record]


@pytest.fixture
async def outage(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str, tmp_path: Path
) -> AsyncIterator[Outage]:
    broker = start_kafka_broker(tmp_path / "kafka")
    health_port, metrics_port = free_port(), free_port()
    env = server_env(
        db_dsn, broker, JQ_HEALTH_PORT=str(health_port), JQ_METRICS_PORT=str(metrics_port)
    )
    server = start_server(env)
    start_worker(server, "--concurrency", "16", "--import", TASKS)
    client = client_for(server.grpc_port)
    state = Outage(broker, server, client, health_port, metrics_port, [], [])
    try:
        # The producer is connected and has published when the broker goes.
        warm_up = await submit_many(client, NOOP, 10)
        await wait_jobs(db_dsn, dict.fromkeys(warm_up, "DONE"), 30)
        await outbox_drained(db_dsn, [server])
        broker.kill()

        for _ in range(OUTAGE_JOBS // 100):
            state.job_ids += await submit_many(client, NOOP, 100)
        await wait_jobs(db_dsn, dict.fromkeys(state.job_ids, "DONE"), 120)
        assert broker.process.poll() is not None  # all of them ran while the broker was down
        state.rows = await event_rows(db_dsn, state.job_ids)
        yield state
    finally:
        await client.channel.close()
        state.broker.stop()


async def test_jobs_run_on_while_the_broker_is_down_and_their_events_wait(
    outage: Outage, db_dsn: str
) -> None:
    rows = outage.rows
    reasons = Counter(row["reason"] for row in rows)
    assert reasons == dict.fromkeys(["SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED"], OUTAGE_JOBS)
    # Every event of the outage waits in the outbox: none was acknowledged, none dropped.
    waiting = await fetch(
        db_dsn, "SELECT unnest(event_ids) AS event_id FROM event_outbox ORDER BY event_id"
    )
    assert [row["event_id"] for row in waiting] == [row["id"] for row in rows]
    assert await asyncio.to_thread(outbox_lag_metric, outage.metrics_port) == len(rows)

    async def degraded() -> dict[str, str] | None:
        kafka = await asyncio.to_thread(kafka_component, outage.server)
        return kafka if kafka["state"] == "DEGRADED" else None

    kafka = await eventually(degraded, 20, "jq-ctl system status: kafka DEGRADED", every=0.5)
    assert f"{len(rows)} event(s) waiting" in kafka["detail"], kafka


async def test_every_event_of_the_outage_arrives_once_the_broker_is_back(
    outage: Outage, tmp_path: Path
) -> None:
    """The broker restarts empty (in memory) on its port: a client that kept its idempotence
    state from before would never get through again; every event still must."""
    outage.broker = start_kafka_broker(tmp_path / "kafka", port=outage.broker.port)
    reader = EventReader(outage.broker.bootstrap_servers, PREFIX)
    try:
        published = await read_everything(reader, {row["id"] for row in outage.rows}, within=30)
    finally:
        reader.close()
    ours = [p for p in published if p.key in set(outage.job_ids)]
    assert_at_least_once(ours, outage.rows)
    assert_per_job_order(ours)

    async def no_lag() -> bool:
        return await asyncio.to_thread(outbox_lag_metric, outage.metrics_port) == 0

    await eventually(no_lag, 30, "jq_events_outbox_lag_events is back to 0", every=0.25)

    async def healthy() -> bool:
        kafka = await asyncio.to_thread(kafka_component, outage.server)
        return kafka["state"] == "HEALTHY"

    await eventually(healthy, 20, "jq-ctl system status: kafka HEALTHY again", every=0.5)


async def test_readyz_stays_200_and_notes_kafka_degraded_while_the_broker_is_down(
    start_server: ServerFactory, db_dsn: str, broker: KafkaBroker
) -> None:
    health_port = free_port()
    server = start_server(server_env(db_dsn, broker, JQ_HEALTH_PORT=str(health_port)))
    readyz = f"http://127.0.0.1:{health_port}/readyz"
    assert await asyncio.to_thread(http_get, readyz) == (200, "ready\n")
    broker.kill()
    answers: list[tuple[int, str]] = []

    async def degraded() -> bool:
        answers.append(await asyncio.to_thread(http_get, readyz))
        assert answers[-1][0] == 200, answers[-3:]  # Kafka never makes a replica unready
        return answers[-1][1].startswith("ready; kafka degraded")

    await eventually(degraded, 20, "/readyz notes kafka degraded", every=0.2)
    # And keeps answering so, past the broker probe's cache (PROBE_CACHE_S = 5 s).
    deadline = time.monotonic() + 6.0
    while time.monotonic() < deadline:
        status, body = await asyncio.to_thread(http_get, readyz)
        assert status == 200, body
        assert body.startswith("ready; kafka degraded: broker unreachable"), body
        await asyncio.sleep(0.2)
    assert server.process.poll() is None


# --- 4. SASL and TLS settings reach the client --dry-run checks ---------------------------------

PASSWORD = "Sasl-Secret-73"
COMPONENTS = ("postgres", "redis", "kafka")


def dry_run(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JQ_")}
    return subprocess.run(
        [program("jq-server"), "--dry-run", "--log-level", "warning"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def dry_run_lines(stdout: str) -> dict[str, str]:
    lines = [line for line in stdout.splitlines() if line.split(":", 1)[0] in COMPONENTS]
    assert [line.split(":", 1)[0] for line in lines] == list(COMPONENTS), stdout
    return {line.split(":", 1)[0]: line for line in lines}


@pytest.mark.parametrize("protocol", ["SASL_SSL", ""])
def test_dry_run_with_sasl_ssl_and_a_missing_ca_file_fails_on_the_ca_file(
    protocol: str, db_dsn: str, broker: KafkaBroker, tmp_path: Path
) -> None:
    """An empty security_protocol means SASL_SSL when a SASL user name is set: a password
    never goes out in clear unless asked to. Either way the CA file is loaded, and fails."""
    missing = tmp_path / "no-such-ca.pem"
    result = dry_run(
        {
            "JQ_DB_DSN": db_dsn,
            "JQ_KAFKA_ENABLED": "true",
            "JQ_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "JQ_KAFKA_SECURITY_PROTOCOL": protocol,
            "JQ_KAFKA_SASL_USERNAME": "alice",
            "JQ_KAFKA_SASL_PASSWORD": PASSWORD,
            "JQ_KAFKA_SSL_CA_FILE": str(missing),
        }
    )

    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = dry_run_lines(result.stdout)
    assert lines["postgres"].startswith("postgres: ok")
    kafka = lines["kafka"]
    assert kafka.startswith(f"kafka: FAILED ({broker.bootstrap_servers}: "), kafka
    assert "Failed to create admin client: ssl.ca.location failed" in kafka, kafka
    assert PASSWORD not in result.stdout + result.stderr


def test_dry_run_with_sasl_plaintext_against_a_broker_without_sasl(
    db_dsn: str, broker: KafkaBroker
) -> None:
    """Whatever librdkafka makes of SASL against a broker that does not ask for it, the line
    says it and the password stays out; PLAINTEXT, with the same credentials configured (and
    unused), is the control: the broker answers it."""
    env = {
        "JQ_DB_DSN": db_dsn,
        "JQ_KAFKA_ENABLED": "true",
        "JQ_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "JQ_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "JQ_KAFKA_SASL_USERNAME": "alice",
        "JQ_KAFKA_SASL_PASSWORD": PASSWORD,
    }
    sasl = dry_run({**env, "JQ_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    plain = dry_run({**env, "JQ_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"})

    ok = f"kafka: ok (1 broker(s) via {broker.bootstrap_servers})"
    assert dry_run_lines(plain.stdout)["kafka"] == ok, plain.stdout
    assert plain.returncode == 0, (plain.stdout, plain.stderr)
    kafka = dry_run_lines(sasl.stdout)["kafka"]
    if kafka.startswith("kafka: ok"):
        assert kafka == ok
        assert sasl.returncode == 0, (sasl.stdout, sasl.stderr)
    else:
        assert kafka.startswith(f"kafka: FAILED ({broker.bootstrap_servers}: "), kafka
        assert sasl.returncode == 1, (sasl.stdout, sasl.stderr)
    for result in (sasl, plain):
        assert PASSWORD not in result.stdout + result.stderr
