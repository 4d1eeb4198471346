"""Lifecycle events read back from Kafka, where jq-server publishes them (SPEC §12): what
`jq-ctl events tail --kafka` shows, the events as consumers of the topics see them.

The consumer is assigned every partition of the job topics itself (no consumer group joins,
no offsets are committed: a tail changes nothing on the broker). Without a filter each
partition is read from N messages before its end; with `--job` or `--queue` from its start,
since Kafka finds messages neither by key nor by content. The first lines are the last N of what
was read up to each partition's end at the start, in event-id order (ids are global, offsets
only per partition). Following, every later message is printed as it comes, and topics or
partitions that appear later (a topic exists from its first message) are read from their start.

The publisher delivers at least once: a message can come twice (the outbox sends a batch again
when its deletion did not happen), so events are told apart by id and each printed once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from google.protobuf.message import DecodeError

from jobq.config import KafkaSettings
from jobq.ctl.errors import CtlError, one_line
from jobq.events.kafka_producer import kafka_client_config
from jobq.events.topics import job_topics
from jobq.rpc._gen import common_pb2 as cpb

POLL_S = 0.5
"""The longest one poll waits for messages while following."""
REFRESH_S = 2.0
"""Seconds between looks for new topics and partitions while following."""
SEEN_IDS = 100_000
"""Event ids remembered to drop a message delivered again; a repeat comes within a batch of
its first delivery (event_publisher.BATCH_LIMIT events), far inside this."""

_SILENT = logging.getLogger("jobq.ctl.librdkafka")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False

Partition = tuple[str, int]


class KafkaEvents:
    """Events of the job topics of one broker, optionally of one job (message key) or queue."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        timeout_s: float,
        job_id: str = "",
        queue: str = "",
    ) -> None:
        self._servers = settings.bootstrap_servers
        self._topics = job_topics(settings.topic_prefix)
        self._timeout_s = timeout_s
        self._key = job_id.encode() if job_id else None
        self._queue = queue
        self._last_error = ""
        self._consumer: Any = Consumer(
            {
                **kafka_client_config(settings),
                # librdkafka wants a group id even for a consumer that only assigns partitions
                # and commits nothing; a fresh one shares no state with anybody's group.
                "group.id": f"jq-ctl-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "client.id": "jq-ctl",
                "error_cb": self._on_error,
                # Errors are reported in one line by this module; librdkafka's own log lines
                # would go to stderr.
                "logger": _SILENT,
            }
        )
        self._assigned: set[Partition] = set()
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._last_refresh = 0.0

    # --- the first lines ----------------------------------------------------------------------

    def first(self, lines: int) -> list[cpb.JobEvent]:
        """The last `lines` events published up to now, oldest first."""
        starts: list[TopicPartition] = []
        ends: dict[Partition, int] = {}
        for topic, partition in self._partitions():
            low, high = self._watermarks(topic, partition)
            filtered = self._key is not None or bool(self._queue)
            start = low if filtered else max(low, high - lines)
            starts.append(TopicPartition(topic, partition, start))
            if start < high:
                ends[(topic, partition)] = high
        self._consumer.assign(starts)
        self._assigned = {(tp.topic, tp.partition) for tp in starts}
        self._last_refresh = time.monotonic()
        events = self._read_to(ends)
        return events[-lines:]

    def _read_to(self, ends: dict[Partition, int]) -> list[cpb.JobEvent]:
        """Consume until each partition in `ends` reached its end offset; the events read, in
        id order. A CtlError when the broker delivers nothing for timeout_s meanwhile."""
        events: list[cpb.JobEvent] = []
        quiet_since = time.monotonic()
        while ends:
            messages = self._consumer.consume(num_messages=1000, timeout=0.2)
            if messages:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > self._timeout_s:
                raise CtlError(
                    f"Kafka at {self._servers} delivered nothing for "
                    f"{self._timeout_s:g}s with {len(ends)} partition(s) not read to their end"
                    + (f" ({self._last_error})" if self._last_error else "")
                )
            for message in messages:
                where = (message.topic(), message.partition())
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        ends.pop(where, None)
                        continue
                    self._check(error)
                    continue
                if message.offset() + 1 >= ends.get(where, 0):
                    ends.pop(where, None)
                events.extend(self._take(message))
        return sorted(events, key=lambda event: event.id)

    # --- following ----------------------------------------------------------------------------

    def poll(self) -> list[cpb.JobEvent]:
        """Wait up to POLL_S for messages; the new events among them, in id order."""
        if time.monotonic() - self._last_refresh >= REFRESH_S:
            self._assign_new()
        events: list[cpb.JobEvent] = []
        for message in self._consumer.consume(num_messages=1000, timeout=POLL_S):
            error = message.error()
            if error is None:
                events.extend(self._take(message))
            elif error.code() != KafkaError._PARTITION_EOF:
                self._check(error)
        return sorted(events, key=lambda event: event.id)

    def _assign_new(self) -> None:
        """Read topics and partitions that appeared since from their start. An unanswered
        metadata request is left for the next look (librdkafka reconnects on its own)."""
        self._last_refresh = time.monotonic()
        try:
            fresh = [
                TopicPartition(topic, partition, OFFSET_BEGINNING)
                for topic, partition in self._partitions(timeout_s=1.0)
                if (topic, partition) not in self._assigned
            ]
        except CtlError:
            return
        if fresh:
            self._consumer.incremental_assign(fresh)
            self._assigned.update((tp.topic, tp.partition) for tp in fresh)

    # --- messages and the broker ----------------------------------------------------------------

    def _take(self, message: Any) -> list[cpb.JobEvent]:
        """The event of one message when it passes the filters and was not seen; else none."""
        if self._key is not None and message.key() != self._key:
            return []
        try:
            event = cpb.JobEvent.FromString(message.value() or b"")
        except DecodeError:
            return []  # not a JobEvent: something else writes to the topic; not ours to show
        if self._queue and event.queue_name != self._queue:
            return []
        if event.id in self._seen:
            return []
        self._seen[event.id] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        return [event]

    def _partitions(self, timeout_s: float | None = None) -> list[Partition]:
        """Every partition of the job topics that exist; a CtlError when the broker does not
        answer."""
        deadline = time.monotonic() + (timeout_s or self._timeout_s)
        while True:
            # Asked in slices of a second: librdkafka waits in C, where Python does not see
            # Ctrl-C, so one long wait would keep an operator waiting for the whole timeout.
            try:
                metadata = self._consumer.list_topics(
                    timeout=max(0.1, min(1.0, deadline - time.monotonic()))
                )
                break
            except KafkaException as exc:
                if time.monotonic() >= deadline:
                    raise CtlError(
                        f"cannot reach Kafka at {self._servers}: {_reason(exc)}"
                    ) from None
        found = []
        for topic in self._topics:
            info = metadata.topics.get(topic)
            if info is None or info.error is not None:
                continue  # not created yet: nothing was published to it
            found += [(topic, partition) for partition in sorted(info.partitions)]
        return found

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        try:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=self._timeout_s, cached=False
            )
        except KafkaException as exc:
            raise CtlError(
                f"cannot read the offsets of {topic} [{partition}] from Kafka at "
                f"{self._servers}: {_reason(exc)}"
            ) from None
        return max(low, 0), max(high, 0)

    def _check(self, error: KafkaError) -> None:
        """A fatal consumer error ends the tail; others (a broker away for a while) pass, as
        librdkafka retries them."""
        self._last_error = _reason(error)
        if error.fatal():
            raise CtlError(f"Kafka at {self._servers}: {self._last_error}")

    def _on_error(self, error: KafkaError) -> None:
        self._last_error = _reason(error)

    def close(self) -> None:
        """Leave the broker: nothing to commit, so this only closes connections."""
        self._consumer.close()


def _reason(error: object) -> str:
    """A KafkaError's or KafkaException's text, one line."""
    if isinstance(error, KafkaException) and error.args:
        error = error.args[0]
    text = error.str() if isinstance(error, KafkaError) else str(error)
    return one_line(text)[:300] or type(error).__name__
