"""The Kafka producer of jq-server: client settings, and a producer that says, per message,
whether the broker acknowledged it.

Idempotent with acks=all (librdkafka's `enable.idempotence`): a message the broker
acknowledged is on every in-sync replica, and a retry inside the client never writes it twice
or out of order within its partition. What the client cannot know, whether a message that
timed out was written, the caller settles by sending it again: at least once, never zero
times (jobq.server.event_publisher keeps an event in the outbox until its ack).

librdkafka runs its own threads; `send` waits for the delivery reports in a worker thread
(`flush`), so the event loop never blocks on the broker. A message waits at most
`message_timeout_s` for its ack, so a batch sent into an outage ends, failed, within that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from jobq.config import KafkaSettings
from jobq.events.message import Message
from jobq.observability.logging_setup import get_logger

__all__ = ["KafkaProducer", "Message", "kafka_client_config"]

log = get_logger("jobq.kafka")

PROBE_CACHE_S = 5.0
"""How long a broker probe's answer is reused: /readyz may be asked every second."""

PROBE_TIMEOUT_S = 2.0
"""How long a probe waits for a broker's metadata."""

FIRST_PROBE_WAIT_S = 1.0
"""How long the first caller waits for the first probe (within /readyz's own limit)."""

ERROR_LOG_INTERVAL_S = 30.0
"""librdkafka reports a missing broker again and again: one log line per this many seconds."""


_SILENT = logging.getLogger("jobq.kafka.librdkafka")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False


def kafka_client_config(settings: KafkaSettings) -> dict[str, str]:
    """librdkafka settings shared by every Kafka client of jobq (publisher, dry run, jq-ctl).

    Without a SASL user name the connection is plaintext unless `security_protocol` says
    otherwise. With one, it defaults to SASL_SSL: a password is never sent unencrypted unless
    the operator asks for SASL_PLAINTEXT explicitly.
    """
    config = {"bootstrap.servers": settings.bootstrap_servers}
    protocol = settings.security_protocol or ("SASL_SSL" if settings.sasl_username else "PLAINTEXT")
    if protocol != "PLAINTEXT":
        config["security.protocol"] = protocol
    if protocol.startswith("SASL_"):
        config |= {
            "sasl.mechanism": settings.sasl_mechanism,
            "sasl.username": settings.sasl_username,
            "sasl.password": settings.sasl_password,
        }
    if settings.ssl_ca_file and protocol in ("SSL", "SASL_SSL"):
        config["ssl.ca.location"] = settings.ssl_ca_file
    return config


class KafkaProducer:
    """One confluent-kafka Producer for a jq-server process (outbox events and heartbeats)."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        message_timeout_s: float = 10.0,
        on_failed: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`on_failed(topic)` is called (from librdkafka's callback thread) for every message
        the broker did not acknowledge."""
        self._config: dict[str, Any] = {
            **kafka_client_config(settings),
            "enable.idempotence": True,  # implies acks=all and ordered retries
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.timeout.ms": int(message_timeout_s * 1000),
            "delivery.report.only.error": True,
            "on_delivery": self._delivered,
            "client.id": "jq-server",
            "error_cb": self._on_error,
            # Errors come through error_cb, into our log, rate-limited; librdkafka's own log
            # lines (stderr by default, fatal ones even at log_level 0) go nowhere.
            "logger": _SILENT,
        }
        self._timeout_s = message_timeout_s
        self._on_failed = on_failed
        self._clock = clock
        self._producer: Any = Producer(self._config)
        self._fatal = False
        self._last_error = ""
        self._last_error_logged = -ERROR_LOG_INTERVAL_S
        self._probe: tuple[float, bool, str] | None = None
        self._probing: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._failed_values: list[bytes | None] = []
        """Values of messages reported failed (None: one that could not be read)."""

    # --- sending ---------------------------------------------------------------------------

    async def send(self, messages: Sequence[Message]) -> list[bool]:
        """Send `messages` in order and wait for their delivery reports: one flag per message,
        True when the broker acknowledged it. Never raises for a delivery failure. The values
        of one call must differ from each other (an event's carry its id): a failure report
        names its message by value."""
        if self._fatal:
            self._recreate()
        # Reports come for failures only (delivery.report.only.error), to one callback for
        # the whole client: a Python call, or a closure, per acknowledged message would cost
        # a microsecond or two each, on every event. So a message counts as acknowledged
        # unless a failure is reported for it, and only once flush() says nothing is left in
        # flight.
        first_report = len(self._failed_values)
        refused: set[bytes | None] = set()
        produce = self._producer.produce
        for index, message in enumerate(messages):
            try:
                produce(message.topic, message.value, message.key, headers=message.headers)
            except BufferError:
                # The client's queue is full (a long outage with heartbeats piling up): what
                # was not queued counts as not delivered and is sent again later.
                for rest in messages[index:]:
                    refused.add(rest.value)
                    self._failed(rest.topic, "the producer's queue is full")
                break
            except KafkaException as exc:
                refused.add(message.value)
                self._failed(message.topic, _reason(exc))
        # Delivery reports arrive within message.timeout.ms; the margin covers the callbacks.
        try:
            in_flight = await asyncio.to_thread(self._producer.flush, self._timeout_s + 5.0)
        except Exception as exc:  # a fatal error surfaces here too: start afresh next time
            self._last_error = _reason(exc)
            self._fatal = True
            in_flight = -1
        refused.update(self._failed_values[first_report:])
        del self._failed_values[:]
        if refused or in_flight != 0:
            # Start the next batch on a fresh client. Seen against a broker that restarted:
            # the idempotent producer bumped its epoch again and again, every message timing
            # out, while a new client delivered at once. A new client has no sequence state
            # to disagree about; what this one still holds is sent again from the outbox.
            self._fatal = True
        if in_flight != 0 or None in refused:
            # Unsettled (or the client failed): which ones is unknown, so none counts as
            # acknowledged; they are sent again (at least once).
            return [False] * len(messages)
        if not refused:
            self._last_error = ""
            return [True] * len(messages)
        return [message.value not in refused for message in messages]

    def send_nowait(self, message: Message) -> None:
        """Queue one message without waiting for its ack (heartbeats: the next one supersedes
        a lost one); a failure is counted by `on_failed`."""
        try:
            self._producer.produce(
                message.topic, message.value, message.key, headers=message.headers
            )
        except (BufferError, KafkaException) as exc:
            self._failed(message.topic, _reason(exc))
        self._ensure_poller()

    def _delivered(self, error: KafkaError | None, message: Any) -> None:
        """librdkafka's delivery report, for failed messages only (called in whichever thread
        polls: the flush of `send`, or the poller)."""
        if error is None:
            return
        try:
            value, topic = message.value(), message.topic()
        except BaseException:  # never raise into librdkafka's callback
            # A failure whose message cannot be named: its send() counts none as delivered.
            self._failed_values.append(None)
            return
        self._failed_values.append(value)
        self._failed(topic, _reason(error))

    def _failed(self, topic: str, reason: str) -> None:
        self._last_error = reason
        if self._on_failed is not None:
            self._on_failed(topic)

    def _ensure_poller(self) -> None:
        # Heartbeats' delivery reports are served by poll(); send() serves them while it
        # flushes, and between sends this task does, once a second.
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(
                self._poll_forever(), name="kafka-poll"
            )

    async def _poll_forever(self) -> None:
        while True:
            self._producer.poll(0)
            await asyncio.sleep(1.0)

    # --- health ----------------------------------------------------------------------------

    @property
    def last_error(self) -> str:
        """Why the last message failed, or "" after a fully acknowledged batch."""
        return self._last_error

    async def reachable(self) -> tuple[bool, str]:
        """(True, detail) when a broker answered the latest metadata request, else (False,
        why). Answers from the last probe at once and starts a new probe in the background
        when that one is older than PROBE_CACHE_S: a probe of a broker that is down takes its
        whole timeout, longer than /readyz may take, and a probe cancelled with its caller
        would never refresh the answer. Only the very first call waits, briefly."""
        if self._probe is None or self._clock() - self._probe[0] >= PROBE_CACHE_S:
            if self._probing is None or self._probing.done():
                self._probing = asyncio.get_running_loop().create_task(self._probe_brokers())
            if self._probe is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._probing), FIRST_PROBE_WAIT_S)
        if self._probe is None:
            return False, "no answer from the brokers yet"
        return self._probe[1], self._probe[2]

    async def _probe_brokers(self) -> None:
        try:
            metadata = await asyncio.to_thread(self._producer.list_topics, None, PROBE_TIMEOUT_S)
            answer = (True, f"{len(metadata.brokers)} broker(s)")
        except KafkaException as exc:
            answer = (False, _reason(exc))
        self._probe = (self._clock(), *answer)

    def _on_error(self, error: KafkaError) -> None:
        self._last_error = _reason(error)
        if error.fatal():
            self._fatal = True
        now = self._clock()
        if error.fatal() or now - self._last_error_logged >= ERROR_LOG_INTERVAL_S:
            self._last_error_logged = now
            log.warning(
                "kafka client error",
                action="kafka.error",
                error=self._last_error,
                fatal=error.fatal(),
            )

    def _recreate(self) -> None:
        # A fatal error (the idempotent producer lost its sequence), or a batch that did not
        # get through: start a new client. Messages the old one still held were not
        # acknowledged and are sent again by their owners.
        log.debug("kafka producer restarted", action="kafka.restarted")
        old, self._producer, self._fatal = self._producer, Producer(self._config), False
        try:
            old.purge()
        except Exception as exc:  # the old client is dropped either way
            log.debug("kafka purge failed", action="kafka.error", error=_reason(exc))

    async def close(self) -> None:
        """Deliver what is queued within a few seconds, then stop polling. Idempotent."""
        for task in (self._poller, self._probing):
            if task is not None:
                task.cancel()
        self._poller = self._probing = None
        await asyncio.to_thread(self._producer.flush, 3.0)


def _reason(error: object) -> str:
    """A KafkaError's or KafkaException's text, one line, without a traceback."""
    if isinstance(error, KafkaException) and error.args:
        error = error.args[0]
    text = error.str() if isinstance(error, KafkaError) else str(error)
    return " ".join(text.split())[:300] or type(error).__name__
