"""The event publisher's process (`python -m jobq.server.publisher_main`), started by
jq-server when Kafka is enabled: see server/publisher_process.py for why and how.

Reads its PublisherConfig from the first line of stdin, then publishes the event outbox until
stdin closes or SIGTERM arrives, gives the lease back and exits. A composition root of its
own: it opens a small pool and a producer, and nothing else of jq-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Mapping

from jobq.events.kafka_producer import KafkaProducer
from jobq.observability.logging_setup import configure_logging, get_logger
from jobq.server.event_publisher import MESSAGE_TIMEOUT_S, EventPublisher
from jobq.server.publisher_process import STATUS_KEY, PublisherConfig
from jobq.storage.pool import create_pool
from jobq.storage.postgres.event_outbox import PgEventOutboxStore

log = get_logger("jobq.events")

_PR_SET_PDEATHSIG = 1
STOP_STEP_S = 5.0


class StatusLines:
    """A PublishObserver that writes `{"jobq_publisher": {...}}` lines to stdout for the
    server: each batch's published counts, with the failures counted since, and every change
    of state.

    Failures are reported from librdkafka's callback (in the thread that flushes), so they
    are only appended to a list there (atomic, no lock: a lock taken in that callback was
    seen left held after confluent-kafka raised inside it, and the process hung on it)."""

    def __init__(self) -> None:
        self._failed: list[str] = []

    def failed(self, topic: str) -> None:
        self._failed.append(topic)

    def published(self, counts: Mapping[str, int]) -> None:
        self._write({"published": dict(counts)})

    def state(self, holding: bool, degraded: str | None) -> None:
        self._write({"holding": holding, "degraded": degraded})

    def _write(self, status: dict[str, object]) -> None:
        failed, self._failed = self._failed, []
        if failed:
            status["failed"] = dict(Counter(failed))
        try:
            sys.stdout.write(json.dumps({STATUS_KEY: status}) + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):  # jq-server is gone: stopping anyway
            pass


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM when jq-server dies, however it dies (Linux); and if it died already, now."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        raise SystemExit(0)


def _when_stdin_closes(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set `stop` once stdin reaches its end (jq-server stopping, or gone): a daemon thread,
    so a stop by signal never waits for it."""

    def read() -> None:
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read, name="stdin-watch", daemon=True).start()


async def run(config: PublisherConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    _when_stdin_closes(loop, stop)
    status = StatusLines()
    pool = await create_pool(config.dsn, schema=config.db_schema, min_size=1, max_size=2)
    producer = KafkaProducer(
        config.kafka, message_timeout_s=MESSAGE_TIMEOUT_S, on_failed=status.failed
    )
    publisher = EventPublisher(
        PgEventOutboxStore(pool),
        producer,
        status,
        owner=config.owner,
        topic_prefix=config.kafka.topic_prefix,
    )
    publisher.loop.start()
    try:
        await stop.wait()
    finally:
        # Each step bounded: PostgreSQL or the broker may be gone with jq-server.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(publisher.stop(), STOP_STEP_S)  # gives the lease back
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.close(), STOP_STEP_S)
        try:
            await asyncio.wait_for(pool.close(), STOP_STEP_S)
        except Exception:
            pool.terminate()


def main() -> None:
    config = PublisherConfig.model_validate_json(sys.stdin.buffer.readline())
    _die_with_parent(config.parent_pid)
    with contextlib.suppress(OSError):
        os.nice(config.nice)
    configure_logging("jq-server", config.log_level, config.log_format)
    asyncio.run(run(config))
    # A flush still waiting in a worker thread (a broker that never answers) must not keep
    # the process alive: everything that matters is done.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
