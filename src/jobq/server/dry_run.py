"""`jq-server --dry-run`: check that PostgreSQL, Redis and Kafka answer, then exit (SPEC §9).

Meant for deploy pipelines and operators who want to know, before starting a server, that the
configuration points at reachable services. It prints exactly one line per component
(`postgres: ok (...)`, `redis: FAILED (...)`, `kafka: disabled`) and changes nothing: no
migration runs, and the embedded PostgreSQL is not started (only checked for being startable,
or asked for its version when it already runs). The checks run concurrently, each bounded by a
timeout, so the whole run takes at most a few seconds.

For a configured PostgreSQL the line also says what jq-server would find there: whether the
server's version is supported (jobq.storage.server_version: an unsupported one fails the
check, an untested one is noted), a database jq-server would create or may not, and whether
`db.schema` is up to date or which migrations jq-server would apply.

Nothing secret is printed: targets are shown as host, port and database only, and every
reason has the configured passwords masked in case a library echoed one back.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from jobq.config import DbSettings, KafkaSettings, RedisSettings, Settings
from jobq.events.kafka_producer import kafka_client_config
from jobq.storage.database import inspect_missing_database
from jobq.storage.embedded import EmbeddedPostgres, bin_dir
from jobq.storage.migrations import schema_state
from jobq.storage.pool import configure_session
from jobq.storage.server_version import ServerVersion, server_version

__all__ = ["REDIS_TIMEOUT_S", "Check", "dry_run"]

REDIS_TIMEOUT_S = 2.0
KAFKA_TIMEOUT_S = 3.0
_MAX_REASON_CHARS = 300
_MIN_MASKED_CHARS = 4


@dataclass(frozen=True)
class Check:
    """The outcome of one component's check, printed as `component: status (detail)`."""

    component: str
    status: str  # "ok", "FAILED" or "disabled"
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "FAILED"

    def line(self) -> str:
        return f"{self.component}: {self.status}" + (f" ({self.detail})" if self.detail else "")


async def dry_run(settings: Settings, out: TextIO) -> int:
    """Check every configured component, print one line each to `out`, and return the exit
    code: 0 when all configured components answer, else 1. Disabled ones do not count."""
    secrets = _secrets(settings)
    checks = await asyncio.gather(
        _check_postgres(settings.db),
        _check_redis(settings.redis),
        _check_kafka(settings.kafka),
    )
    for check in checks:
        detail = check.detail
        for secret in secrets:
            detail = detail.replace(secret, "***")
        print(Check(check.component, check.status, detail).line(), file=out)
    out.flush()
    return 1 if any(check.failed for check in checks) else 0


# --- PostgreSQL ------------------------------------------------------------------------------


async def _check_postgres(db: DbSettings) -> Check:
    dsn = db.resolved_dsn()
    if dsn is None:
        return await _check_embedded(db.embedded_data_dir, db.connect_timeout_s)
    where = _describe_dsn(dsn)
    try:
        version = await _server_version(dsn, db.connect_timeout_s)
    except asyncpg.InvalidCatalogNameError:
        return await _check_missing_database(dsn, where, db.connect_timeout_s)
    except Exception as exc:
        return Check("postgres", "FAILED", f"{where}: {_reason(exc)}")
    if not version.supported:
        return Check("postgres", "FAILED", f"{where}: {version.refusal()}")
    try:
        schema = await _schema_state(dsn, db.schema, db.connect_timeout_s)
    except Exception as exc:
        return Check("postgres", "FAILED", f"{where}: schema {db.schema}: {_reason(exc)}")
    notes = "; ".join(filter(None, [version.warning(), schema]))
    return Check("postgres", "ok", f"PostgreSQL {version.text} at {where}; {notes}")


async def _server_version(dsn: str, timeout_s: float) -> ServerVersion:
    async with asyncio.timeout(timeout_s + 1.0):
        conn = await asyncpg.connect(dsn, timeout=timeout_s)
        try:
            return await server_version(conn)
        finally:
            await conn.close()


async def _check_missing_database(dsn: str, where: str, timeout_s: float) -> Check:
    """The database does not exist: fine if jq-server may create it (it will), else FAILED
    with the statement to run."""
    try:
        async with asyncio.timeout(timeout_s * 2 + 1.0):
            missing = await inspect_missing_database(dsn, timeout_s)
    except Exception as exc:
        return Check("postgres", "FAILED", f"{where}: {_reason(exc)}")
    if missing is None:  # created in the meantime
        return Check("postgres", "ok", f"{where}: the database exists now")
    if not missing.may_create:
        return Check("postgres", "FAILED", f"{where}: {missing.refusal()}")
    return Check(
        "postgres",
        "ok",
        f"{where}: database {missing.name} does not exist yet; jq-server will create it "
        f"(role {missing.role} may create databases)",
    )


async def _schema_state(dsn: str, schema: str, timeout_s: float) -> str:
    """`schema` as jq-server would find it, in the words of the dry-run line."""
    async with asyncio.timeout(timeout_s + 1.0):
        conn = await asyncpg.connect(dsn, timeout=timeout_s)
        try:
            await configure_session(conn, schema)  # as jq-server's sessions see the database
            state = await schema_state(conn, schema=schema)
        finally:
            await conn.close()
    if not state.exists:
        return f"schema {schema} does not exist yet; jq-server will create it"
    if state.pending:
        return f"schema {schema}: jq-server will apply {len(state.pending)} migration(s)"
    return f"schema {schema} up to date"


async def _check_embedded(data_dir: Path, timeout_s: float) -> Check:
    where = f"embedded PostgreSQL in {data_dir}"
    try:
        bin_dir()
    except Exception as exc:
        return Check("postgres", "FAILED", f"{where}: {_reason(exc)}")
    problem = _data_dir_problem(data_dir)
    if problem:
        return Check("postgres", "FAILED", f"{where}: {problem}")
    embedded = EmbeddedPostgres(data_dir)
    try:
        running = await asyncio.to_thread(embedded.is_running)
    except Exception as exc:
        return Check("postgres", "FAILED", f"{where}: {_reason(exc)}")
    if not running:
        return Check("postgres", "ok", f"{where}: available (not started by --dry-run)")
    try:
        version = await _server_version(embedded.dsn(), timeout_s)
    except Exception as exc:
        return Check("postgres", "FAILED", f"{where}: running but {_reason(exc)}")
    if not version.supported:
        return Check("postgres", "FAILED", f"{where}: {version.refusal()}")
    untested = f"; {version.warning()}" if version.warning() else ""
    return Check("postgres", "ok", f"{where}: running PostgreSQL {version.text}{untested}")


def _data_dir_problem(data_dir: Path) -> str:
    """Why the embedded server could not use `data_dir`, or "" when it could."""
    if data_dir.exists():
        if not data_dir.is_dir():
            return f"{data_dir} is not a directory"
        if not os.access(data_dir, os.R_OK | os.W_OK | os.X_OK):
            return f"data directory {data_dir} is not writable"
        return ""
    parent = data_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create {data_dir}: {parent} is not writable"
    return ""


def _describe_dsn(dsn: str) -> str:
    """`host:port/database` of a PostgreSQL URL, without user name or password; with several
    hosts (libpq's `host=a,b` or `@a:1,b:2`, as a failover DSN has) every `host:port`, and
    the `target_session_attrs` that picks among them."""
    try:
        parts = urlsplit(dsn)
        if parts.scheme not in ("postgres", "postgresql"):
            return "the configured DSN"
        query = parse_qs(parts.query)
        netloc_hosts = parts.netloc.rpartition("@")[2]
        hosts = _split(unquote(query["host"][0])) if "host" in query else _split(netloc_hosts)
        ports = _split(query["port"][0]) if "port" in query else []
        endpoints = [
            _endpoint(host, ports[n] if n < len(ports) else (ports[0] if ports else ""))
            for n, host in enumerate(hosts or ["localhost"])
        ]
    except (ValueError, IndexError):
        return "the configured DSN"
    database = unquote(parts.path.lstrip("/")) or "(default database)"
    where = f"{','.join(endpoints)}/{database}"
    attrs = query.get("target_session_attrs")
    return f"{where} (target_session_attrs={attrs[0]})" if attrs else where


def _split(hosts: str) -> list[str]:
    return [h for h in hosts.split(",") if h]


def _endpoint(host: str, port: str) -> str:
    """`host:port` of one entry of a host list: its own port (`h:5433`), else the port list's,
    else 5432; a socket directory (`/run/postgresql`) as it is."""
    if host.startswith("/"):  # a socket directory: the socket's name has the port
        return f"{host}:{int(port or '5432')}"
    if host.startswith("["):  # [::1]:5433
        name, _, rest = host.partition("]")
        return f"{name}]:{rest.lstrip(':') or port or '5432'}"
    name, _, own = host.partition(":")
    number = int(own or port or "5432")  # ValueError: not a port
    return f"{name}:{number}"


# --- Redis -----------------------------------------------------------------------------------


async def _check_redis(redis: RedisSettings) -> Check:
    if not redis.enabled:
        return Check("redis", "disabled")
    where = _describe_redis_url(redis.url)
    try:
        client = Redis.from_url(
            redis.url,
            password=redis.password or None,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
    except Exception as exc:
        return Check("redis", "FAILED", f"{where}: {_reason(exc)}")
    try:
        async with asyncio.timeout(REDIS_TIMEOUT_S):
            await client.ping()
            info = await client.info("server")
    except Exception as exc:
        return Check("redis", "FAILED", f"{where}: {_reason(exc)}")
    finally:
        await client.aclose()
    version = info.get("redis_version", "?") if isinstance(info, dict) else "?"
    return Check("redis", "ok", f"Redis {version} at {where}")


def _describe_redis_url(url: str) -> str:
    """The scheme, host, port and database of a Redis URL, without credentials."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"unix:{parts.path}"
        host = parts.hostname or "localhost"
        port = parts.port or 6379
    except ValueError:
        return "the configured URL"
    return f"{parts.scheme}://{host}:{port}{parts.path}"


# --- Kafka -----------------------------------------------------------------------------------


async def _check_kafka(kafka: KafkaSettings) -> Check:
    if not kafka.enabled:
        return Check("kafka", "disabled")
    config: dict[str, str | int | float | bool] = {
        **kafka_client_config(kafka),
        "socket.timeout.ms": int(KAFKA_TIMEOUT_S * 1000),
        "log_level": 0,  # librdkafka would print its connection errors on stderr
    }
    where = kafka.bootstrap_servers

    def list_topics() -> int:
        # Blocking librdkafka call: run in a thread so the other checks go on meanwhile.
        metadata = AdminClient(config).list_topics(timeout=KAFKA_TIMEOUT_S)
        return len(metadata.brokers)

    try:
        brokers = await asyncio.to_thread(list_topics)
    except Exception as exc:
        return Check("kafka", "FAILED", f"{where}: {_reason(exc)}")
    return Check("kafka", "ok", f"{brokers} broker(s) via {where}")


# --- shared ----------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """One short line saying why a check failed."""
    if isinstance(exc, KafkaException) and exc.args and hasattr(exc.args[0], "str"):
        text = str(exc.args[0].str())
    elif isinstance(exc, TimeoutError):
        text = "timed out"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:_MAX_REASON_CHARS]


def _secrets(settings: Settings) -> list[str]:
    """The configured secrets to mask in the output, longest first.

    Our own descriptions never contain credentials; masking guards against a library echoing
    one in an error message. Secrets shorter than `_MIN_MASKED_CHARS` are left alone: masking
    "p" would garble every line while hiding nothing worth hiding.
    """
    candidates = [settings.db.password, settings.redis.password, settings.kafka.sasl_password]
    for url in (settings.db.dsn, settings.redis.url):
        try:
            parts = urlsplit(url)
            passwords = [parts.password or "", *parse_qs(parts.query).get("password", [])]
        except ValueError:
            continue
        candidates += [
            variant for password in passwords for variant in (password, unquote(password))
        ]
    masked = {secret for secret in candidates if len(secret) >= _MIN_MASKED_CHARS}
    return sorted(masked, key=len, reverse=True)
