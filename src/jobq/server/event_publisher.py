"""Publishes the event outbox to Kafka: every committed job_events row, at least once, per job
in order, by one replica at a time (issue 16, SPEC §12).

Each pass: take or renew the publisher lease (db/migrations/V15: one row, judged by the
database clock); without it, do nothing. With it, read the oldest waiting events in id order,
send them (idempotent producer, acks=all), and delete from the outbox exactly the ones the
broker acknowledged: the deletion is the published-up-to marker, advanced only after the ack.
A crash between the ack and the delete sends those events again (a consumer de-duplicates by
the event id in the headers); nothing is deleted before its ack, so nothing is lost.

Never in the way: the outbox is written by PostgreSQL in the transaction of the change itself,
so job processing never waits for Kafka. When the broker is away, a pass sends a small probe
batch, fails within the producer's message timeout, reports Kafka degraded and tries again at
the next pass; the backlog waits in PostgreSQL. Those failures are not the loop's: it stays up
(readiness would otherwise turn a Kafka outage into a jq-server outage).

One publisher among replicas: the lease lasts `LEASE_S` and is renewed before a batch once a
quarter of it has passed, so a replica that dies is replaced within LEASE_S plus one pass
interval; one that stops gives
the lease back and is replaced at once. A batch (read, send, delete) always ends within the
lease: the producer's message timeout is well under it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol
from uuid import UUID

from google.protobuf.timestamp_pb2 import Timestamp

from jobq.domain.records import OutboxEvent
from jobq.domain.states import JobStatus
from jobq.events.message import Message
from jobq.events.topics import WORKER_HEARTBEAT_TOPIC, topic_for
from jobq.observability.logging_setup import get_logger
from jobq.observability.metrics import ServerMetrics
from jobq.rpc._gen import common_pb2
from jobq.server.event_encoding import encode_job_event
from jobq.server.service_loop import ServiceLoop
from jobq.storage.stores import EventOutboxStore

log = get_logger("jobq.events")

LEASE_S = 8.0
"""How long the publisher's lease lasts without renewal: the takeover bound after a crash."""

MESSAGE_TIMEOUT_S = 4.0
"""How long a message may wait for the broker's ack before it counts as not delivered; half
the lease, so a batch sent into an outage ends while its sender still holds the lease."""

INTERVAL_S = 0.25
"""Seconds between passes: the delay of an event after its commit, at most, when idle."""

BATCH_LIMIT = 5000
"""Events read, sent and deleted per batch while the broker answers."""

PROBE_LIMIT = 50
"""Events per batch while the broker does not answer: enough to notice it is back."""

EVENT_ID_HEADER = "jobq-event-id"
CORRELATION_ID_HEADER = "jobq-correlation-id"


class EventSender(Protocol):
    """What the publisher needs of a producer (events.kafka_producer.KafkaProducer)."""

    async def send(self, messages: Sequence[Message]) -> list[bool]: ...

    @property
    def last_error(self) -> str: ...


def job_topics_by_status(topic_prefix: str) -> dict[str, str]:
    """job_status (as text) → the topic its events go to, with the prefix."""
    return {status.value: topic_for(status, topic_prefix) for status in JobStatus}


def event_message(item: OutboxEvent, topics: dict[str, str]) -> Message:
    """The Kafka message of one outbox event: the JobEvent proto, keyed by the job id (so a
    job's events share a partition and keep their order), with the event id for de-duplication
    and the submitting request's correlation id (the job id when it had none) as headers.
    `topics`: job_topics_by_status's map."""
    job_id = item.job_id
    assert job_id is not None
    key = job_id.encode()
    value = encode_job_event(
        item.event_id,
        job_id,
        item.queue_name,
        item.from_status,
        item.to_status,
        item.worker_id,
        item.reason,
        item.detail,
        item.occurred_us,
        item.attempt,
    )
    correlation = item.correlation_id.encode() if item.correlation_id else key
    headers = [(EVENT_ID_HEADER, str(item.event_id).encode()), (CORRELATION_ID_HEADER, correlation)]
    return Message(topics[item.to_status], key, value, headers)


class PublishObserver(Protocol):
    """Who hears what the publisher did: jq-server's metrics, through the publisher process's
    status lines (server/publisher_process.py), or a test."""

    def published(self, counts: Mapping[str, int]) -> None:
        """Events acknowledged by the broker, by topic, in one batch."""
        ...

    def state(self, holding: bool, degraded: str | None) -> None:
        """The lease was taken or lost, or the broker stopped or resumed acknowledging."""
        ...


class MetricsObserver:
    """A PublishObserver that counts into jq-server's metrics."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def published(self, counts: Mapping[str, int]) -> None:
        for topic, count in counts.items():
            self._metrics.events_published.labels(topic=topic).inc(count)

    def state(self, holding: bool, degraded: str | None) -> None:
        self._metrics.events_publisher_active.set(1 if holding else 0)


class EventPublisher:
    def __init__(
        self,
        outbox: EventOutboxStore,
        sender: EventSender,
        observer: PublishObserver,
        *,
        owner: str,
        topic_prefix: str = "",
        lease_s: float = LEASE_S,
        interval_s: float = INTERVAL_S,
        batch_limit: int = BATCH_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch_limit < PROBE_LIMIT:
            raise ValueError(f"batch_limit must be at least {PROBE_LIMIT}, got {batch_limit}")
        self._outbox = outbox
        self._sender = sender
        self._observer = observer
        self._owner = owner
        self._topics = job_topics_by_status(topic_prefix)
        self._lease_s = lease_s
        self._batch_limit = batch_limit
        self._clock = clock
        self._renewed_at = 0.0
        self.holding = False
        self.degraded: str | None = None
        """Why the last batch was not fully acknowledged (the broker's error), or None."""
        self.loop = ServiceLoop(
            "event-publisher", interval_s, self.run_once, retry_s=0.5, max_retry_s=5.0
        )

    async def run_once(self) -> int:
        """Publish what waits, batch by batch, while the lease is held and the broker
        acknowledges; returns how many events were published."""
        published = 0
        while await self._lease():
            limit = PROBE_LIMIT if self.degraded else self._batch_limit
            batch = await self._outbox.outbox_read(limit)
            if not batch:
                break
            done, complete = await self._publish(batch)
            published += done
            if not complete or len(batch) < limit:
                break
        return published

    async def _publish(self, batch: list[OutboxEvent]) -> tuple[int, bool]:
        """Send one batch, and delete the outbox rows all of whose events were acknowledged:
        (events published, all acked). A row with one event not acknowledged stays, and its
        events that were are sent again with it (at least once, never fewer)."""
        sendable = [item for item in batch if item.job_id is not None]
        topics = self._topics
        messages = [event_message(item, topics) for item in sendable]
        acked = await self._sender.send(messages) if messages else []
        unsent = {item.batch_id for item, ok in zip(sendable, acked, strict=True) if not ok}
        # Events whose job was deleted have nothing left to publish: their rows just go.
        done = {item.batch_id for item in batch} - unsent
        await self._outbox.outbox_delete(sorted(done))
        self._observer.published(
            Counter(
                message.topic
                for item, message, ok in zip(sendable, messages, acked, strict=True)
                if ok and item.batch_id in done
            )
        )
        delivered = sum(1 for item in sendable if item.batch_id in done)
        complete = all(acked)
        if complete and self.degraded is not None:
            log.info("kafka is back: publishing the backlog", action="events.resumed")
            self.degraded = None
            self._observer.state(self.holding, None)
        elif not complete and self.degraded is None:
            self.degraded = self._sender.last_error or "the broker did not acknowledge"
            log.warning(
                "kafka does not acknowledge events: they wait in the outbox",
                action="events.degraded",
                error=self.degraded,
            )
            self._observer.state(self.holding, self.degraded)
        return delivered, complete

    async def _lease(self) -> bool:
        # A holder renews once a quarter of the lease has passed, not on every pass and batch
        # (four writes of the lease row a second, forever, on an idle installation); a replica
        # without the lease asks on every pass, which writes nothing while the lease is held.
        now = self._clock()
        if self.holding and now - self._renewed_at < self._lease_s / 4:
            return True
        held, previous = await self._outbox.lease_take(self._owner, self._lease_s)
        self._renewed_at = now
        if held != self.holding:
            self.holding = held
            self._observer.state(held, self.degraded)
            if held:
                log.info(
                    "publishing lifecycle events to kafka",
                    action="events.publisher_started",
                    took_over_from=previous if previous not in (None, self._owner) else None,
                )
            else:
                log.info("another replica publishes events now", action="events.publisher_lost")
        return held

    async def stop(self) -> None:
        """Stop publishing and give the lease back, so another replica takes over at once."""
        await self.loop.stop()
        if self.holding:
            try:
                await self._outbox.lease_release(self._owner)
            except Exception as exc:  # the lease runs out by itself
                log.warning("cannot release the event lease", action="events.error", error=str(exc))
            self.holding = False
            self._observer.state(False, self.degraded)


def heartbeat_message(
    worker_id: UUID, active_job_count: int, job_ids: Sequence[UUID], topic_prefix: str = ""
) -> Message:
    """The Kafka message of one worker heartbeat, keyed by the worker id. Heartbeats are sent
    by the replica that received them, without the outbox: each supersedes the one before, so
    a heartbeat lost in an outage tells a consumer nothing the next one does not."""
    occurred_at = Timestamp()
    occurred_at.GetCurrentTime()
    event = common_pb2.WorkerHeartbeatEvent(
        worker_id=str(worker_id),
        active_job_count=active_job_count,
        job_ids=[str(job_id) for job_id in job_ids],
        occurred_at=occurred_at,
    )
    return Message(
        topic_prefix + WORKER_HEARTBEAT_TOPIC,
        str(worker_id).encode(),
        event.SerializeToString(),
        [],
    )


def heartbeats_to(
    send: Callable[[Message], None], topic_prefix: str
) -> Callable[[UUID, int, list[UUID]], None]:
    """A WorkerServicer heartbeat hook that sends each heartbeat with `send` (no waiting)."""

    def published(worker_id: UUID, active: int, job_ids: list[UUID]) -> None:
        send(heartbeat_message(worker_id, active, job_ids, topic_prefix))

    return published
