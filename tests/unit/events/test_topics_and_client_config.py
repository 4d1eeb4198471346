"""Topic names (SPEC §12) and the librdkafka settings every Kafka client of jobq shares."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobq.config import KafkaSettings
from jobq.domain.states import JobStatus
from jobq.events.kafka_producer import kafka_client_config
from jobq.events.topics import job_topics, topic_for


@pytest.mark.parametrize(
    ("status", "topic"),
    [
        (JobStatus.PENDING, "job.submitted"),
        (JobStatus.ASSIGNED, "job.submitted"),
        (JobStatus.RUNNING, "job.started"),
        (JobStatus.DONE, "job.completed"),
        (JobStatus.FAILED, "job.failed"),
        (JobStatus.DEAD_LETTERED, "job.dead-lettered"),
    ],
)
def test_topic_for_maps_every_status_as_spec_12_says(status: JobStatus, topic: str) -> None:
    assert topic_for(status) == topic
    assert topic_for(status, "prod.") == "prod." + topic


def test_job_topics_lists_each_topic_once() -> None:
    assert job_topics("p.") == [
        "p.job.submitted",
        "p.job.started",
        "p.job.completed",
        "p.job.failed",
        "p.job.dead-lettered",
    ]


def test_without_sasl_the_connection_is_plaintext() -> None:
    config = kafka_client_config(KafkaSettings(bootstrap_servers="k1:9092,k2:9092"))
    assert config == {"bootstrap.servers": "k1:9092,k2:9092"}


def test_a_sasl_user_means_sasl_ssl_unless_told_otherwise() -> None:
    config = kafka_client_config(
        KafkaSettings(bootstrap_servers="k:9092", sasl_username="alice", sasl_password="pw")
    )
    assert config["sasl.username"] == "alice"
    assert config["sasl.password"] == "pw"
    assert config["security.protocol"] == "SASL_SSL"  # never a password in clear by default
    assert config["sasl.mechanism"] == "PLAIN"
    assert "ssl.ca.location" not in config


def test_scram_over_plaintext_and_a_ca_file_are_passed_through() -> None:
    plain = kafka_client_config(
        KafkaSettings(
            sasl_username="bob",
            sasl_password="pw",
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            ssl_ca_file="/etc/ca.pem",
        )
    )
    assert plain["security.protocol"] == "SASL_PLAINTEXT"
    assert plain["sasl.mechanism"] == "SCRAM-SHA-512"
    assert "ssl.ca.location" not in plain  # no TLS, no CA
    tls = kafka_client_config(KafkaSettings(security_protocol="SSL", ssl_ca_file="/etc/ca.pem"))
    assert tls == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "SSL",
        "ssl.ca.location": "/etc/ca.pem",
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("security_protocol", "SASL_SSL2"),
        ("sasl_mechanism", "GSSAPI"),
        ("topic_prefix", "bad prefix"),
        ("topic_prefix", "x" * 101),
    ],
)
def test_bad_kafka_settings_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        KafkaSettings(**{field: value})
