"""The configuration of jq-server, jq-worker and jq-ctl as frozen, validated models (SPEC §9).

Every field has a default, so no config file at all runs the embedded default: the embedded
PostgreSQL, Redis and Kafka off. Each program receives only the sections it needs.
`loader.load_settings` fills these models from the file, the environment and the flags.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

import platformdirs
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from jobq.domain.scopes import SCOPE_NAMES
from jobq.domain.validation import QUEUE_NAME_PATTERN

SECRET_FIELDS: tuple[str, ...] = (
    "db.password",
    "redis.password",
    "kafka.sasl_password",
    "worker.token",
    "ctl.token",
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


def _check_scopes(scopes: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [scope for scope in scopes if scope not in SCOPE_NAMES]
    if unknown:
        raise ValueError(
            f"unknown scope(s) {', '.join(map(repr, unknown))}; scopes are "
            + ", ".join(SCOPE_NAMES)
        )
    if not scopes:
        raise ValueError("name at least one scope: " + ", ".join(SCOPE_NAMES))
    return tuple(dict.fromkeys(scopes))


def _split_scopes(value: object) -> object:
    return (
        [part for part in value.replace(",", "+").split("+") if part]
        if isinstance(value, str)
        else value
    )


QueueName = Annotated[str, AfterValidator(_check_queue_name)]
ModuleName = Annotated[str, AfterValidator(_check_module_name)]
Port = Annotated[int, Field(ge=1, le=65535)]
OptionalPort = Annotated[int, Field(ge=0, le=65535)]
"""A listening port where 0 turns the listener off."""


class _Section(BaseModel):
    # validate_default: cross-field rules must also hold when one side keeps its default.
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class GrpcSettings(_Section):
    """The gRPC listener of jq-server."""

    host: str = Field(
        "127.0.0.1",
        description="Address the gRPC server listens on. A non-loopback address needs "
        "authentication (auth.tokens or grpc.tls_client_ca) or grpc.insecure.",
    )
    port: Port = Field(50051, description="TCP port of the gRPC server (1-65535).")
    graceful_shutdown_s: float = Field(
        10.0, gt=0, description="Seconds in-flight calls get to finish when the server stops."
    )
    max_message_bytes: int = Field(
        4 * 1024 * 1024, gt=0, description="Largest gRPC message, in bytes, sent or received."
    )
    insecure: bool = Field(
        False,
        description="Allow listening (gRPC, health, metrics) on non-loopback addresses with no "
        "authentication configured; only on a network you trust (also --insecure).",
    )
    reflection: bool = Field(
        True, description="Serve gRPC server reflection (grpcurl); it needs the read scope."
    )
    tls_cert: str = Field(
        "", description="Server certificate chain (PEM file); with grpc.tls_key, serve TLS."
    )
    tls_key: str = Field("", description="Server private key (PEM file).")
    tls_client_ca: str = Field(
        "",
        description="CA certificates (PEM file) that sign client certificates: turns on "
        "mutual TLS, every connection must present a certificate it signed (needs "
        "grpc.tls_cert); auth.certificates gives the certificates scopes.",
    )

    @field_validator("tls_key")
    @classmethod
    def _cert_and_key_together(cls, value: str, info: ValidationInfo) -> str:
        if bool(value) != bool(info.data.get("tls_cert")):
            raise ValueError("grpc.tls_cert and grpc.tls_key must be set together")
        return value

    @field_validator("tls_client_ca")
    @classmethod
    def _client_ca_needs_tls(cls, value: str, info: ValidationInfo) -> str:
        if value and not info.data.get("tls_cert"):
            raise ValueError("mutual TLS needs a server certificate: set grpc.tls_cert too")
        return value


_TOKEN_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class TokenEntry(BaseModel):
    """A bearer token the server accepts: its name (for logs and the audit trail), its scopes,
    and the SHA-256 of its secret. The secret itself is never configured on the server.

    In YAML a mapping; anywhere (and in JQ_AUTH_TOKENS) also `NAME:SCOPE+SCOPE:SHA256`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    scopes: Annotated[
        tuple[str, ...], BeforeValidator(_split_scopes), AfterValidator(_check_scopes)
    ]
    sha256: str

    @model_validator(mode="before")
    @classmethod
    def _from_compact(cls, value: object) -> object:
        if isinstance(value, str):
            parts = value.strip().split(":", 2)
            if len(parts) != 3:
                raise ValueError("a token entry is NAME:SCOPE+SCOPE:SHA256")
            return {"name": parts[0], "scopes": parts[1], "sha256": parts[2]}
        return value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _TOKEN_NAME.fullmatch(value):
            raise ValueError("token names are 1-64 characters from A-Z a-z 0-9 _ . @ -")
        return value

    @field_validator("sha256")
    @classmethod
    def _check_hash(cls, value: str) -> str:
        value = value.strip().lower().removeprefix("sha256:")
        if not _SHA256_HEX.fullmatch(value):
            raise ValueError(
                "sha256 must be the 64 hex digits of the secret's SHA-256 "
                "(jq-ctl token create prints it)"
            )
        return value


class CertificateEntry(BaseModel):
    """The scopes of a client certificate, found by its subject's common name (CN).

    In YAML a mapping; anywhere (and in JQ_AUTH_CERTIFICATES) also `CN:SCOPE+SCOPE`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    common_name: str
    scopes: Annotated[
        tuple[str, ...], BeforeValidator(_split_scopes), AfterValidator(_check_scopes)
    ]

    @model_validator(mode="before")
    @classmethod
    def _from_compact(cls, value: object) -> object:
        if isinstance(value, str):
            common_name, sep, scopes = value.strip().rpartition(":")
            if not sep:
                raise ValueError("a certificate entry is CN:SCOPE+SCOPE")
            return {"common_name": common_name, "scopes": scopes}
        return value

    @field_validator("common_name")
    @classmethod
    def _check_common_name(cls, value: str) -> str:
        if not 1 <= len(value) <= 256 or not value.isprintable():
            raise ValueError("common_name must be 1-256 printable characters")
        return value


class AuthSettings(_Section):
    """Who may call jq-server: bearer tokens and client certificates, each with scopes."""

    tokens: tuple[TokenEntry, ...] = Field(
        (),
        description="Bearer tokens: name, scopes (submit, read, admin, worker) and the SHA-256 "
        "of the secret, never the secret. Compact form NAME:SCOPE+SCOPE:SHA256.",
    )
    certificates: tuple[CertificateEntry, ...] = Field(
        (),
        description="Scopes of client certificates (mutual TLS), by subject CN. Compact form "
        "CN:SCOPE+SCOPE.",
    )

    @field_validator("tokens")
    @classmethod
    def _unique_token_names(cls, value: tuple[TokenEntry, ...]) -> tuple[TokenEntry, ...]:
        names = [entry.name for entry in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"token names must be unique: {', '.join(duplicates)}")
        return value


SCHEMA_NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,52}")
"""What `db.schema` may be: a plain lower-case identifier, which means the same quoted or not
(an operator's `SET search_path = jobq` in psql finds it), of at most 53 characters so that the
schema's notification channel (`jobq_jobs_<schema>`, see jobq.server.notifier) stays within
PostgreSQL's 63-byte names. It is still quoted wherever it reaches SQL."""


def _check_schema_name(name: str) -> str:
    if not SCHEMA_NAME_PATTERN.fullmatch(name):
        raise ValueError(
            "must be 1 to 53 characters from a-z 0-9 _, not starting with a digit (a plain "
            "PostgreSQL identifier)"
        )
    if name.startswith("pg_") or name == "information_schema":
        raise ValueError("names starting with pg_, and information_schema, belong to PostgreSQL")
    return name


SchemaName = Annotated[str, AfterValidator(_check_schema_name)]

# pydantic warns that a field called `schema` shadows BaseModel.schema(), its deprecated v1
# JSON-schema method; `db.schema` is the setting's public name (YAML key, JQ_DB_SCHEMA), and
# nothing of jobq's calls that method, so the warning is silenced for this one class.
_SHADOWS_SCHEMA = r'Field name "schema" in "DbSettings" shadows an attribute'
warnings.filterwarnings("ignore", _SHADOWS_SCHEMA, UserWarning)


class DbSettings(_Section):
    """PostgreSQL: an external server (`dsn`, or `host` and friends) or the embedded one."""

    dsn: str = Field(
        "",
        repr=False,
        description="Full PostgreSQL DSN. Empty: built from db.host etc. if db.host is set, "
        "else the embedded server is used.",
    )
    host: str = Field("", description="PostgreSQL host; used only when db.dsn is empty.")
    port: Port = Field(5432, description="PostgreSQL port; used with db.host.")
    name: str = Field("jobq", description="Database name; used with db.host.")
    user: str = Field("jobq", description="Database user; used with db.host.")
    password: str = Field("", repr=False, description="Database password; used with db.host.")
    pool_min_size: int = Field(2, ge=1, description="Connections the pool keeps open (>= 1).")
    pool_max_size: int = Field(
        10, ge=1, description="Most connections the pool opens (>= db.pool_min_size)."
    )
    embedded_data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("jobq")) / "postgres",
        description="Data directory of the embedded PostgreSQL ('~' is expanded).",
        json_schema_extra={"doc_default": "<user data dir>/jobq/postgres"},
    )
    connect_timeout_s: float = Field(
        5.0, gt=0, description="Seconds to wait for a new database connection."
    )
    command_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a single database statement may run."
    )
    schema: SchemaName = Field(  # type: ignore[assignment]  # shadows BaseModel.schema()
        "public",
        description="Schema that holds every jobq object (tables, types, "
        "flyway_schema_history); created at start-up when missing. Default public: existing "
        "installations keep their tables where they are, as Flyway does, and psql finds them "
        "without a search_path. Set e.g. jobq to share an application's database. Applied "
        "with SET search_path on every jobq session; a plain name of at most 53 characters "
        "(a-z 0-9 _).",
    )

    @field_validator("pool_max_size")
    @classmethod
    def _max_at_least_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("pool_min_size")
        if isinstance(low, int) and value < low:
            raise ValueError(f"must be >= db.pool_min_size ({low})")
        return value

    @field_validator("embedded_data_dir")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    def resolved_dsn(self) -> str | None:
        """The DSN to connect with, or None to mean "start and use the embedded server"."""
        if self.dsn:
            return self.dsn
        if not self.host:
            return None
        userinfo = quote(self.user, safe="")
        if self.password:
            userinfo += ":" + quote(self.password, safe="")
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        at = f"{userinfo}@" if userinfo else ""
        return f"postgresql://{at}{host}:{self.port}/{quote(self.name, safe='')}"


class RedisSettings(_Section):
    """Optional Redis, used for coordination (locks); off by default."""

    enabled: bool = Field(False, description="Use Redis.")
    url: str = Field("redis://127.0.0.1:6379/0", repr=False, description="Redis URL.")
    password: str = Field("", repr=False, description="Redis password (not in the URL).")


class KafkaSettings(_Section):
    """Optional Kafka event stream of job lifecycle events; off by default."""

    enabled: bool = Field(False, description="Publish job events to Kafka.")
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated Kafka brokers (host:port)."
    )
    topic_prefix: str = Field("", description="Prefix put before every topic name.")
    sasl_username: str = Field("", description="SASL user name; empty: no SASL.")
    sasl_password: str = Field("", repr=False, description="SASL password.")


class SchedulerSettings(_Section):
    """The dispatcher and maintenance loops of jq-server."""

    interval_ms: int = Field(500, gt=0, description="Milliseconds between dispatcher passes.")
    batch_size: int = Field(
        100, ge=1, le=10000, description="Most jobs claimed per pass (1-10000)."
    )
    assignment_timeout_s: float = Field(
        30.0, gt=0, description="Seconds an ASSIGNED job may wait for the worker to start it."
    )
    worker_heartbeat_timeout_s: float = Field(
        30.0, gt=0, description="Seconds without a heartbeat after which a worker is lost."
    )
    heartbeat_check_interval_s: float = Field(
        10.0, gt=0, description="Seconds between checks for lost workers."
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


class WorkerSettings(_Section):
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


class LimitsSettings(_Section):
    """Limits on what clients may send."""

    max_payload_bytes: int = Field(1048576, gt=0, description="Largest job payload, in bytes.")
    max_batch_size: int = Field(1000, gt=0, description="Most jobs in one batch request.")


class MetricsSettings(_Section):
    """The Prometheus endpoints of jq-server (metrics.port) and jq-worker (worker.metrics_port)."""

    host: str = Field("127.0.0.1", description="Address of the metrics endpoints.")
    port: OptionalPort = Field(9090, description="Port of the metrics endpoint; 0 turns it off.")


class HealthSettings(_Section):
    """The HTTP health endpoints of jq-server (health.port) and jq-worker (worker.health_port)."""

    host: str = Field("127.0.0.1", description="Address of the health endpoints.")
    port: OptionalPort = Field(8080, description="Port of the health endpoint; 0 turns it off.")


class LoggingSettings(_Section):
    """Logging of all three programs."""

    level: Annotated[
        Literal["debug", "info", "warning", "error", "critical"], BeforeValidator(_lower)
    ] = Field("info", description="Lowest level logged: debug, info, warning, error, critical.")
    format: Annotated[Literal["json", "console"], BeforeValidator(_lower)] = Field(
        "json", description="json (one object per line) or console (for people)."
    )


class CtlSettings(_Section):
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


class Settings(_Section):
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
