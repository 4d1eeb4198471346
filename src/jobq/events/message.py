"""A Kafka message as jobq's producer sends it (`kafka_producer.KafkaProducer`).

A module of its own so that the code that builds messages (the server's event publisher and
its heartbeats) does not import the Kafka client: jq-server imports confluent_kafka (2.4 MB
resident, issue 17) only when Kafka is enabled.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Message"]


class Message(NamedTuple):
    """One record for a topic: its key (the job or worker id), value and headers."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
