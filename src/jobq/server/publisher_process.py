"""jq-server's Kafka events, seen from the server: the publisher's own process, its heartbeat
producer, and what readiness and metrics say about them.

The publisher (server/event_publisher.py) runs in a child process (server/publisher_main.py),
not on the server's event loop, and at a lower CPU priority (`PUBLISHER_NICE`). Measured on
the benchmark's 20,000-job drain (2 cores, PostgreSQL, jq-server, jq-worker and the broker on
one machine): in the server's own loop, its encoding and sending (about 10 µs of Python per
event, four events per job) made every dispatch and report wait behind it, and the drain ran
at 0.73 of its speed without events; in a process of its own at nice 10, 0.96, with the
backlog published within the drain anyway (the publisher takes the CPU the drain leaves, and
more when it is behind: nice 10 is a smaller share, not none). Events are background work:
they must never slow the jobs they describe.

The child gets its settings on stdin (one JSON line: the DSN and SASL password stay out of
argv and the environment), and stops when stdin closes (this side stopping, or dying: the
kernel closes the pipe) or on SIGTERM (sent by the kernel when this process dies, via
PR_SET_PDEATHSIG). It writes its log lines to stdout, which this side forwards to its own,
and its status as lines `{"jobq_publisher": {...}}` (events published by topic, failures,
lease held, broker degraded), which this side turns into metrics and readiness. If it exits
unexpectedly it is started again after a backoff; while it is down, Kafka counts as degraded
and the events wait in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from jobq.config import KafkaSettings, Settings
from jobq.domain.records import OutboxLag
from jobq.observability.logging_setup import get_logger
from jobq.observability.metrics import ServerMetrics
from jobq.server.event_publisher import MetricsObserver
from jobq.storage.stores import EventOutboxStore

if TYPE_CHECKING:
    from jobq.events.kafka_producer import KafkaProducer

log = get_logger("jobq.events")

PUBLISHER_NICE = 10
STATUS_KEY = "jobq_publisher"
STOP_WAIT_S = 10.0
RESTART_S = 1.0
MAX_RESTART_S = 30.0


class PublisherConfig(BaseModel):
    """What the publisher process needs, sent to it on stdin."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dsn: str
    db_schema: str
    kafka: KafkaSettings
    owner: str
    parent_pid: int
    log_level: str = "info"
    log_format: str = "json"
    nice: int = PUBLISHER_NICE


class PublisherProcess:
    """Starts the publisher process, forwards its output, restarts it when it dies."""

    def __init__(self, config: PublisherConfig, metrics: ServerMetrics) -> None:
        self._config = config
        self._observer = MetricsObserver(metrics)
        self._errors = metrics.kafka_publish_errors
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self.holding = False
        self.degraded: str | None = None
        self.restarts = 0

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name="event-publisher-process"
        )

    async def _supervise(self) -> None:
        delay = RESTART_S
        while not self._stopping:
            await self._run_once()
            if self._stopping:
                return
            self.restarts += 1
            log.warning(
                "the event publisher process ended; starting it again",
                action="events.publisher_restart",
                exit_code=None if self._process is None else self._process.returncode,
                in_s=delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_S)

    async def _run_once(self) -> None:
        process = self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jobq.server.publisher_main",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(self._config.model_dump_json().encode() + b"\n")
        await process.stdin.drain()
        async for line in process.stdout:
            self._take(line)
        await process.wait()
        self.holding = False
        self._observer.state(False, None)

    def _take(self, line: bytes) -> None:
        if line.startswith(b'{"' + STATUS_KEY.encode()):
            try:
                status: dict[str, Any] = json.loads(line)[STATUS_KEY]
            except (ValueError, KeyError, TypeError):
                return
            self._observer.published(status.get("published") or {})
            for topic, count in (status.get("failed") or {}).items():
                self._errors.labels(topic=topic).inc(count)
            if "holding" in status:
                self.holding = bool(status["holding"])
                self.degraded = status.get("degraded")
                self._observer.state(self.holding, self.degraded)
            return
        sys.stdout.buffer.write(line)  # one of its log lines
        sys.stdout.flush()

    async def stop(self) -> None:
        """Ask the process to stop (it gives the lease back), wait, kill it if it lingers."""
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), STOP_WAIT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor


class KafkaEvents:
    """Kafka as jq-server sees it: the publisher process, the producer of heartbeats, and the
    outbox's lag. What readiness (server.readiness.KafkaState) and /metrics ask."""

    def __init__(
        self,
        process: PublisherProcess,
        producer: KafkaProducer,
        outbox: EventOutboxStore,
        metrics: ServerMetrics,
    ) -> None:
        self.process = process
        self.producer = producer
        self._outbox = outbox
        self._metrics = metrics

    async def reachable(self) -> tuple[bool, str]:
        return await self.producer.reachable()

    def publish_problem(self) -> str | None:
        if not self.process.running:
            return "the publisher process is not running"
        degraded = self.process.degraded
        return None if degraded is None else f"not acknowledged: {degraded}"

    async def outbox_lag(self) -> OutboxLag:
        return await self._outbox.outbox_lag()

    async def refresh_gauges(self) -> None:
        """Set the outbox lag gauges from the database (on a /metrics scrape)."""
        lag = await self._outbox.outbox_lag()
        self._metrics.events_outbox_lag_events.set(lag.events)
        self._metrics.events_outbox_lag_seconds.set(lag.oldest_s or 0.0)

    def start(self) -> None:
        self.process.start()

    async def stop(self) -> None:
        await self.process.stop()
        await self.producer.close()


def publisher_owner() -> str:
    """The lease owner's name: host, jq-server's pid, and a random part (a pid is reused)."""
    return f"{socket.gethostname()}/{os.getpid()}/{os.urandom(4).hex()}"


def kafka_events(
    settings: Settings, dsn: str, outbox: EventOutboxStore, metrics: ServerMetrics
) -> KafkaEvents:
    """What a jq-server with kafka.enabled runs for its events (not started yet)."""
    config = PublisherConfig(
        dsn=dsn,
        db_schema=settings.db.schema,
        kafka=settings.kafka,
        owner=publisher_owner(),
        parent_pid=os.getpid(),
        log_level=settings.logging.level,
        log_format=settings.logging.format,
    )
    # Imported here: a jq-server with Kafka off never loads the Kafka client (issue 17).
    from jobq.events.kafka_producer import KafkaProducer

    errors = metrics.kafka_publish_errors
    producer = KafkaProducer(
        settings.kafka, on_failed=lambda topic: errors.labels(topic=topic).inc()
    )
    return KafkaEvents(PublisherProcess(config, metrics), producer, outbox, metrics)
