"""The configuration of jq-server, jq-worker and jq-ctl as frozen, validated models (SPEC §9).

Every field has a default, so no config file at all runs the embedded default: the embedded
PostgreSQL, Redis and Kafka off. Each program receives only the sections it needs.
`loader.load_settings` fills these models from the file, the environment and the flags.

The sections of access (gRPC, auth) and of the database live in `access_settings` and
`db_settings`; every name stays importable from here.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
)

from jobq.config.access_settings import AuthSettings, CertificateEntry, GrpcSettings, TokenEntry
from jobq.config.dashboard_settings import DashboardSettings
from jobq.config.db_settings import SCHEMA_NAME_PATTERN, DbSettings, SchemaName
from jobq.config.history_settings import HistorySettings
from jobq.config.section import OptionalPort, Port, Section
from jobq.domain.validation import QUEUE_NAME_PATTERN

__all__ = [
    "CREDENTIAL_URL_FIELDS",
    "SCHEMA_NAME_PATTERN",
    "SECRET_FIELDS",
    "AuthSettings",
    "CertificateEntry",
    "CtlSettings",
    "DashboardSettings",
    "DbSettings",
    "GrpcSettings",
    "HealthSettings",
    "HistorySettings",
    "KafkaSettings",
    "LimitsSettings",
    "LoggingSettings",
    "MetricsSettings",
    "ModuleName",
    "OptionalPort",
    "Port",
    "QueueName",
    "RedisSettings",
    "SchedulerSettings",
    "SchemaName",
    "Settings",
    "TokenEntry",
    "WorkerSettings",
    "section_models",
]

SECRET_FIELDS: tuple[str, ...] = (
    "db.password",
    "redis.password",
    "kafka.sasl_password",
    "worker.token",
    "ctl.token",
    "dashboard.session_secret",
)
"""Dotted names of the fields that hold secrets. Setting one in the config file gives a warning,
error messages never echo their values, and `repr()` leaves them out."""

CREDENTIAL_URL_FIELDS: tuple[str, ...] = ("db.dsn", "redis.url")
"""URL fields that may carry a password (`postgresql://user:pw@host/db`); treated like secrets
when they do."""

_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _check_queue_name(name: str) -> str:
    if not QUEUE_NAME_PATTERN.fullmatch(name):  # the API's rule, defined once
        raise ValueError("queue names are 1 to 128 characters from A-Z a-z 0-9 _ . -")
    return name


def _check_module_name(name: str) -> str:
    if not _MODULE_NAME.fullmatch(name):
        raise ValueError("must be a dotted Python module name such as 'myapp.tasks'")
    return name


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


QueueName = Annotated[str, AfterValidator(_check_queue_name)]
ModuleName = Annotated[str, AfterValidator(_check_module_name)]


class RedisSettings(Section):
    """Optional Redis, used for coordination (locks); off by default."""

    enabled: bool = Field(False, description="Use Redis.")
    url: str = Field("redis://127.0.0.1:6379/0", repr=False, description="Redis URL.")
    password: str = Field("", repr=False, description="Redis password (not in the URL).")


class KafkaSettings(Section):
    """Optional Kafka event stream of job lifecycle events; off by default."""

    enabled: bool = Field(False, description="Publish job events to Kafka.")
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated Kafka brokers (host:port)."
    )
    topic_prefix: str = Field(
        "",
        max_length=100,
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prefix put before every topic name, as it is (e.g. 'prod.').",
    )
    security_protocol: Literal["", "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "",
        description="Empty: SASL_SSL with a SASL user name, PLAINTEXT without one.",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism when SASL is used."
    )
    sasl_username: str = Field("", description="SASL user name; empty: no SASL.")
    sasl_password: str = Field("", repr=False, description="SASL password.")
    ssl_ca_file: str = Field(
        "", description="CA certificates (PEM) to verify the brokers; empty: the system's."
    )


class SchedulerSettings(Section):
    """The dispatcher and maintenance loops of jq-server."""

    interval_ms: int = Field(500, gt=0, description="Milliseconds between dispatcher passes.")
    batch_size: int = Field(
        100, ge=1, le=10000, description="Most jobs claimed per pass (1-10000)."
    )
    assignment_timeout_s: float = Field(
        30.0, gt=0, description="Seconds an ASSIGNED job may wait for the worker to start it."
    )
    assign_at_submit: bool = Field(
        True,
        description="Write a lone submitted job straight to a connected worker with a free "
        "slot when none of its queue is waiting (one statement instead of insert and claim).",
    )
    worker_heartbeat_timeout_s: float = Field(
        30.0, gt=0, description="Seconds without a heartbeat after which a worker is lost."
    )
    heartbeat_check_interval_s: float = Field(
        10.0, gt=0, description="Seconds between checks for lost workers."
    )
    dependency_sweep_interval_s: float = Field(
        10.0,
        gt=0,
        description="Seconds between sweeps for WAITING jobs whose prerequisites have ended.",
    )
    retry_base_delay_s: float = Field(
        5.0, ge=0, description="Backoff before the first retry, in seconds."
    )
    retry_max_delay_s: float = Field(
        300.0, ge=0, description="Upper bound of the retry backoff (>= retry_base_delay_s)."
    )

    @field_validator("retry_max_delay_s")
    @classmethod
    def _max_at_least_base(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("retry_base_delay_s")
        if isinstance(base, float | int) and value < base:
            raise ValueError(f"must be >= scheduler.retry_base_delay_s ({base})")
        return value


class WorkerSettings(Section):
    """jq-worker: the server it connects to, the jobs it takes and what it may run."""

    server_addr: str = Field("localhost:50051", description="host:port of jq-server.")
    worker_id: str = Field("", description="This worker's id; empty: the server assigns one.")
    concurrency: int = Field(4, ge=1, le=1024, description="Jobs run at once (1-1024).")
    queues: tuple[QueueName, ...] = Field(
        ("default",),
        min_length=1,
        description="Queues to take jobs from (names of 1-128 characters: A-Z a-z 0-9 _ . -).",
    )
    heartbeat_interval_s: float = Field(5.0, gt=0, description="Seconds between heartbeats.")
    shutdown_grace_period_s: float = Field(
        30.0, ge=0, description="Seconds running jobs get to finish on shutdown."
    )
    metrics_port: OptionalPort = Field(
        9091, description="Port of the worker's Prometheus endpoint; 0 turns it off."
    )
    health_port: OptionalPort = Field(
        8081, description="Port of the worker's health endpoint; 0 turns it off."
    )
    imports: tuple[ModuleName, ...] = Field(
        (), description="Modules whose task functions the worker may run (`--import`)."
    )
    allowed_commands: tuple[Annotated[str, Field(min_length=1)], ...] = Field(
        (),
        description="Executables command jobs may run: names (looked up on the worker's PATH) "
        'or absolute paths; "*" allows any. Empty: command jobs are refused.',
    )
    run_as_user: str = Field(
        "", description="User (name or uid) command jobs run as when the worker runs as root."
    )
    run_as_group: str = Field(
        "",
        description="Group (name or gid) of command jobs run as worker.run_as_user; empty: "
        "that user's primary group.",
    )
    allow_root_jobs: bool = Field(
        False,
        description="Let a worker running as root run command jobs as root (without "
        "worker.run_as_user); refused otherwise.",
    )
    token: str = Field(
        "", repr=False, description="Bearer token the worker presents (scope worker)."
    )
    token_file: str = Field(
        "", description="File holding the worker's bearer token (instead of worker.token)."
    )
    tls_ca: str = Field(
        "", description="CA certificate (PEM file) that signed jq-server's: connect with TLS."
    )
    tls_cert: str = Field("", description="Client certificate (PEM file) for mutual TLS.")
    tls_key: str = Field("", description="Client private key (PEM file) for mutual TLS.")
    max_output_bytes: int = Field(
        65536, gt=0, description="Bytes of a command's stdout/stderr kept."
    )
    cancel_grace_s: float = Field(
        10.0,
        ge=0,
        description="Seconds a cancelled job gets to stop: a command's process group between "
        "SIGTERM and SIGKILL, a sync handler before its thread is abandoned.",
    )


class LimitsSettings(Section):
    """Limits on what clients may send."""

    max_payload_bytes: int = Field(1048576, gt=0, description="Largest job payload, in bytes.")
    max_batch_size: int = Field(1000, gt=0, description="Most jobs in one batch request.")


class MetricsSettings(Section):
    """The Prometheus endpoints of jq-server (metrics.port) and jq-worker (worker.metrics_port)."""

    host: str = Field("127.0.0.1", description="Address of the metrics endpoints.")
    port: OptionalPort = Field(9090, description="Port of the metrics endpoint; 0 turns it off.")


class HealthSettings(Section):
    """The HTTP health endpoints of jq-server (health.port) and jq-worker (worker.health_port)."""

    host: str = Field("127.0.0.1", description="Address of the health endpoints.")
    port: OptionalPort = Field(8080, description="Port of the health endpoint; 0 turns it off.")


class LoggingSettings(Section):
    """Logging of all three programs."""

    level: Annotated[
        Literal["debug", "info", "warning", "error", "critical"], BeforeValidator(_lower)
    ] = Field("info", description="Lowest level logged: debug, info, warning, error, critical.")
    format: Annotated[Literal["json", "console"], BeforeValidator(_lower)] = Field(
        "json", description="json (one object per line) or console (for people)."
    )


class CtlSettings(Section):
    """jq-ctl: the server it talks to and how it prints results."""

    server_addr: str = Field("localhost:50051", description="host:port of jq-server.")
    timeout_s: float = Field(10.0, gt=0, description="Seconds each call may take.")
    output: Annotated[Literal["table", "json", "yaml"], BeforeValidator(_lower)] = Field(
        "table", description="Output format: table, json or yaml."
    )
    tls_ca: str = Field("", description="CA certificate file; set to use TLS.")
    tls_cert: str = Field("", description="Client certificate file (mutual TLS).")
    tls_key: str = Field("", description="Client private key file (mutual TLS).")
    token: str = Field("", repr=False, description="Bearer token sent with every call.")
    token_file: str = Field("", description="File holding the bearer token (instead of ctl.token).")


class Settings(Section):
    """Everything jobq can be configured with, one attribute per section."""

    grpc: GrpcSettings = Field(default_factory=GrpcSettings, description="gRPC server.")
    auth: AuthSettings = Field(default_factory=AuthSettings, description="Authentication.")
    db: DbSettings = Field(default_factory=DbSettings, description="PostgreSQL.")
    redis: RedisSettings = Field(default_factory=RedisSettings, description="Redis.")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="Kafka.")
    scheduler: SchedulerSettings = Field(
        default_factory=SchedulerSettings, description="Scheduler."
    )
    worker: WorkerSettings = Field(default_factory=WorkerSettings, description="Worker.")
    limits: LimitsSettings = Field(default_factory=LimitsSettings, description="Limits.")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings, description="Metrics.")
    health: HealthSettings = Field(default_factory=HealthSettings, description="Health.")
    dashboard: DashboardSettings = Field(
        default_factory=DashboardSettings, description="Dashboard and HTTP API."
    )
    history: HistorySettings = Field(
        default_factory=HistorySettings, description="Job history and its retention."
    )
    logging: LoggingSettings = Field(default_factory=LoggingSettings, description="Logging.")
    ctl: CtlSettings = Field(default_factory=CtlSettings, description="jq-ctl.")


def section_models() -> dict[str, type[BaseModel]]:
    """Section name → its model class, in the order of `Settings`."""
    models: dict[str, type[BaseModel]] = {}
    for name, info in Settings.model_fields.items():
        assert isinstance(info.annotation, type)
        assert issubclass(info.annotation, BaseModel)
        models[name] = info.annotation
    return models
