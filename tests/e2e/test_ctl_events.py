"""`jq-ctl events tail` end to end: the real jq-ctl against a real jq-server (and jq-worker),
reading lifecycle events from PostgreSQL (through ListJobEvents) and from a real
Kafka-protocol broker the server publishes them to."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from support.ctl import as_json, failure, ok, wait_for_status
from support.ctl import jq_ctl_at as jq_ctl
from support.kafka_broker import KafkaBroker, running_kafka_broker
from support.processes import ServerFactory, ServerProcess, WorkerFactory, free_port, program

PREFIX = "e2e."
HEADER = ["ID", "TIME", "JOB", "QUEUE", "FROM", "→", "TO", "REASON", "WORKER", "ATTEMPT", "DETAIL"]


class Follower:
    """A `jq-ctl ... events tail --follow` process whose output lines are read as they come."""

    def __init__(self, server: ServerProcess, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JQ_CTL_")}
        env["JQ_CTL_SERVER_ADDR"] = f"127.0.0.1:{server.grpc_port}"
        self.process = subprocess.Popen(
            [program("jq-ctl"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._arrived: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._arrived.put(line.rstrip("\n"))
        self._arrived.put(None)

    def wait_for(self, done: Callable[[list[str]], bool], within: float = 30) -> list[str]:
        """Read lines until `done(lines so far)` holds; fail after `within` seconds."""
        deadline = time.monotonic() + within
        while not done(self.lines):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"not printed in time; so far: {self.lines}"
            try:
                line = self._arrived.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, f"jq-ctl ended: {self.lines}, {self.stderr()}"
            self.lines.append(line)
        return self.lines

    def stderr(self) -> str:
        return "" if self.process.stderr is None else self.process.stderr.read()

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: its exit status and stderr."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=15)
        return code, self.stderr()

    def kill(self) -> None:
        """Kill it if it still runs, and close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def followers() -> Iterator[Callable[..., Follower]]:
    started: list[Follower] = []

    def start(server: ServerProcess, *args: str) -> Follower:
        follower = Follower(server, *args)
        started.append(follower)
        return follower

    yield start
    for follower in started:
        follower.kill()


async def _event_ids(dsn: str, job_id: str | None = None) -> list[int]:
    """job_events' ids as PostgreSQL has them, in order."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT id FROM job_events WHERE $1::uuid IS NULL OR job_id = $1::uuid ORDER BY id",
            job_id,
        )
    finally:
        await conn.close()
    return [row["id"] for row in rows]


def _tail(server: ServerProcess, *args: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = as_json(server, "events", "tail", *args)["events"]
    return events


def _submit(server: ServerProcess, *args: str) -> str:
    return ok(jq_ctl(server, "job", "submit", *args)).strip()


async def test_tail_from_postgres_in_table_json_and_yaml(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server, "--queues", "default")
    done = _submit(server, "--", "echo", "hello")
    finished = wait_for_status(server, done, "DONE")
    assert worker.terminate() == 0
    ok(jq_ctl(server, "queue", "create", "side"))
    side = _submit(server, "-q", "side", "--", "true")
    pending = _submit(server, "--", "true")
    everything = await _event_ids(db_dsn)
    assert len(everything) == 4 + 1 + 1  # DONE's four (and nothing from the stopped worker)

    events = _tail(server)
    assert [e["id"] for e in events] == everything
    assert [(e["job_id"], e["reason"]) for e in events] == [
        (done, "SUBMITTED"), (done, "ASSIGNED"), (done, "STARTED"), (done, "COMPLETED"),
        (side, "SUBMITTED"), (pending, "SUBMITTED"),
    ]  # fmt: skip
    assert events == as_json(server, "job", "logs", done)["events"] + _tail(server, "-n", "2")
    assert list(events[0]) == [
        "id", "job_id", "queue_name", "from_status", "to_status", "worker_id", "reason",
        "detail", "occurred_at", "attempt",
    ]  # fmt: skip
    assert [e["id"] for e in _tail(server, "-n", "3")] == everything[-3:]
    from_yaml = yaml.safe_load(ok(jq_ctl(server, "-o", "yaml", "events", "tail", "-n", "2")))
    assert from_yaml["events"] == events[-2:]

    table = ok(jq_ctl(server, "events", "tail")).splitlines()
    assert table[0].split() == HEADER
    rows = [line.split() for line in table[1:]]
    assert [int(row[0]) for row in rows] == everything
    assert rows[0][2:8] == [done, "default", "-", "→", "PENDING", "SUBMITTED"]
    started = rows[2]
    assert started[4:11] == [
        "ASSIGNED", "→", "RUNNING", "STARTED", finished["worker_id"][:8], "1", "-"
    ]  # fmt: skip
    assert rows[4][2:4] == [side, "side"]
    assert all(line == line.rstrip() for line in table)
    widths = {line.index("QUEUE" if i == 0 else line.split()[3]) for i, line in enumerate(table)}
    assert len(widths) == 1  # aligned

    # The filters.
    assert [e["id"] for e in _tail(server, "--job", done)] == await _event_ids(db_dsn, done)
    assert [e["job_id"] for e in _tail(server, "--job", done.upper(), "-n", "1")] == [done]
    assert [e["job_id"] for e in _tail(server, "--queue", "side")] == [side]
    assert _tail(server, "--job", "00000000-0000-4000-8000-000000000000") == []
    assert ok(jq_ctl(server, "events", "tail", "--queue", "nothing-here")) == "no events\n"


async def test_bad_tail_input_is_one_line_and_a_usage_error(
    start_server: ServerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    assert "malformed job id 'nope'" in failure(
        jq_ctl(server, "events", "tail", "--job", "nope"), code=2
    )
    assert "invalid queue name 'a b'" in failure(
        jq_ctl(server, "events", "tail", "--queue", "a b"), code=2
    )
    for lines in ("0", "1001", "-3"):
        assert "--lines" in failure(jq_ctl(server, "events", "tail", "-n", lines), code=2)
    assert "--topic-prefix" in failure(
        jq_ctl(server, "events", "tail", "--topic-prefix", "x."), code=2
    )
    assert "kafka.topic_prefix" in failure(
        jq_ctl(server, "events", "tail", "--kafka", "127.0.0.1:9", "--topic-prefix", "a b"),
        code=2,
    )
    unreachable = failure(
        jq_ctl(server, "--timeout", "1", "events", "tail", "--kafka", f"127.0.0.1:{free_port()}")
    )
    assert unreachable.startswith("cannot reach Kafka at 127.0.0.1:")


async def test_follow_prints_later_events_until_ctrl_c(
    start_server: ServerFactory,
    start_worker: WorkerFactory,
    db_dsn: str,
    followers: Callable[..., Follower],
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    before = _submit(server, "--", "true")
    tail = followers(server, "events", "tail", "--follow")
    lines = tail.wait_for(lambda lines: len(lines) >= 2)
    assert lines[0].split() == HEADER
    assert lines[1].split()[2] == before

    start_worker(server, "--queues", "default")
    later = _submit(server, "--", "echo", "later")
    wait_for_status(server, later, "DONE")
    reasons = ["SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED"]

    def later_done(lines: list[str]) -> bool:
        return [line.split()[7] for line in lines if later in line] == reasons

    tail.wait_for(later_done)
    assert await _event_ids(db_dsn) == [int(line.split()[0]) for line in tail.lines[1:]]
    code, stderr = tail.interrupt()
    assert (code, stderr) == (0, "")

    # JSON: one event per line; the job filter before the job even exists.
    next_job = json.loads(ok(jq_ctl(server, "-o", "json", "job", "submit", "--", "true")))
    job_tail = followers(server, "-o", "json", "events", "tail", "-f", "--job", next_job["job_id"])
    documents = job_tail.wait_for(lambda lines: len(lines) >= 4)
    assert [json.loads(line)["reason"] for line in documents] == reasons
    assert {json.loads(line)["job_id"] for line in documents} == {next_job["job_id"]}
    assert job_tail.interrupt() == (0, "")


# --- from Kafka --------------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    with running_kafka_broker(tmp_path / "kafka") as running:
        yield running


def _kafka_server(start: ServerFactory, db_dsn: str, broker: KafkaBroker) -> ServerProcess:
    return start(
        {
            "JQ_DB_DSN": db_dsn,
            "JQ_KAFKA_ENABLED": "true",
            "JQ_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "JQ_KAFKA_TOPIC_PREFIX": PREFIX,
        }
    )


def _eventually(condition: Callable[[], Any], within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)
    return result


async def test_kafka_tail_shows_the_events_postgres_has(
    start_server: ServerFactory,
    start_worker: WorkerFactory,
    db_dsn: str,
    broker: KafkaBroker,
    followers: Callable[..., Follower],
) -> None:
    server = _kafka_server(start_server, db_dsn, broker)
    worker = start_worker(server, "--queues", "default")
    jobs = [_submit(server, "--", "echo", str(n)) for n in range(3)]
    for job_id in jobs:
        wait_for_status(server, job_id, "DONE")
    everything = await _event_ids(db_dsn)
    assert len(everything) == 12
    kafka = ("--kafka", broker.bootstrap_servers, "--topic-prefix", PREFIX)

    from_postgres = _tail(server, "-n", "100")
    from_kafka = _eventually(
        lambda: (found := _tail(server, *kafka, "-n", "100")) and len(found) == 12 and found
    )
    assert [e["id"] for e in from_kafka] == everything
    assert from_kafka == from_postgres
    assert [e["id"] for e in _tail(server, *kafka, "-n", "5")] == everything[-5:]
    job_events = _tail(server, *kafka, "--job", jobs[1])
    assert [e["id"] for e in job_events] == await _event_ids(db_dsn, jobs[1])
    assert [e["reason"] for e in job_events] == ["SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED"]
    table = ok(jq_ctl(server, "events", "tail", *kafka, "-n", "4")).splitlines()
    assert table[0].split() == HEADER
    assert [int(line.split()[0]) for line in table[1:]] == everything[-4:]
    # Another prefix names other topics: nothing there.
    assert _tail(server, "--kafka", broker.bootstrap_servers, "--topic-prefix", "other.") == []
    # The prefix comes from the environment too, as jq-server reads it.
    from_env = json.loads(
        ok(
            jq_ctl(
                server,
                "-o", "json", "events", "tail", "--kafka", broker.bootstrap_servers, "-n", "1",
                env={"JQ_KAFKA_TOPIC_PREFIX": PREFIX},
            )
        )
    )  # fmt: skip
    assert [e["id"] for e in from_env["events"]] == everything[-1:]

    tail = followers(server, "-o", "json", "events", "tail", "--follow", *kafka, "-n", "1")
    tail.wait_for(lambda lines: len(lines) >= 1)
    later = _submit(server, "--", "echo", "later")
    wait_for_status(server, later, "DONE")
    tail.wait_for(lambda lines: sum(later in line for line in lines) == 4)
    printed = [json.loads(line)["id"] for line in tail.lines]
    assert printed == (await _event_ids(db_dsn))[-5:]
    assert tail.interrupt() == (0, "")
    assert worker.terminate() == 0
