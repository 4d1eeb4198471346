"""Read back what jq-server published to Kafka, for tests: every message of the job topics (and
worker.heartbeat), decoded, with its topic, partition and offset."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from jobq.events.topics import WORKER_HEARTBEAT_TOPIC, job_topics
from jobq.rpc._gen import common_pb2


@dataclass(frozen=True)
class Published:
    topic: str
    partition: int
    offset: int
    key: str
    headers: dict[str, str]
    event: common_pb2.JobEvent

    @property
    def event_id(self) -> int:
        return int(self.headers["jobq-event-id"])


class EventReader:
    """A consumer assigned to every partition of the job topics from the beginning; topics
    that appear later (created by the first message) are picked up as they come."""

    def __init__(self, bootstrap_servers: str, prefix: str = "") -> None:
        self._topics = job_topics(prefix)
        self._heartbeat_topic = prefix + WORKER_HEARTBEAT_TOPIC
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": "jobq-tests",
                "enable.auto.commit": False,
                "log_level": 0,
            }
        )
        self._assigned: set[tuple[str, int]] = set()
        self.events: list[Published] = []
        self.heartbeats: list[common_pb2.WorkerHeartbeatEvent] = []

    def _assign_new(self) -> None:
        try:
            metadata = self._consumer.list_topics(timeout=2)
        except Exception:
            return
        fresh = []
        for topic in [*self._topics, self._heartbeat_topic]:
            info = metadata.topics.get(topic)
            if info is None or info.error is not None:
                continue
            for partition in info.partitions:
                if (topic, partition) not in self._assigned:
                    self._assigned.add((topic, partition))
                    fresh.append(TopicPartition(topic, partition, OFFSET_BEGINNING))
        if fresh:
            self._consumer.incremental_assign(fresh)

    def read_until(
        self, done: Callable[[list[Published]], bool], timeout: float = 60.0
    ) -> list[Published]:
        """Consume until `done(self.events)` holds; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last_assign = 0.0
        while not done(self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"after {timeout} s, {len(self.events)} events read")
            if time.monotonic() - last_assign > 1.0:
                self._assign_new()
                last_assign = time.monotonic()
            for message in self._consumer.consume(num_messages=1000, timeout=0.2):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consumer error: {error.str()}")
                self._take(message)
        return self.events

    def _take(self, message: object) -> None:
        topic = message.topic()  # type: ignore[attr-defined]
        if topic == self._heartbeat_topic:
            beat = common_pb2.WorkerHeartbeatEvent()
            beat.ParseFromString(message.value())  # type: ignore[attr-defined]
            self.heartbeats.append(beat)
            return
        event = common_pb2.JobEvent()
        event.ParseFromString(message.value())  # type: ignore[attr-defined]
        headers = {k: v.decode() for k, v in (message.headers() or [])}  # type: ignore[attr-defined]
        self.events.append(
            Published(
                topic,
                message.partition(),  # type: ignore[attr-defined]
                message.offset(),  # type: ignore[attr-defined]
                message.key().decode(),  # type: ignore[attr-defined]
                headers,
                event,
            )
        )

    def stored_count(self) -> int:
        """How many messages the broker holds in the job topics (every partition, high minus
        low watermark): more than `len(self.events)` means some are still unread."""
        metadata = self._consumer.list_topics(timeout=5)
        total = 0
        for topic in self._topics:
            info = metadata.topics.get(topic)
            if info is None or info.error is not None:
                continue
            for partition in info.partitions:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=5, cached=False
                )
                total += high - low
        return total

    def reset(self) -> None:
        """Forget the assignment (a restarted broker has new, empty topics)."""
        self._consumer.unassign()
        self._assigned.clear()

    def close(self) -> None:
        self._consumer.close()
