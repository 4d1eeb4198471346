"""`make cluster`'s topology on paper: which port each process gets, the environment each
jq-server and jq-worker starts with, and Prometheus's configuration. No process is started
here (tools/cluster.py does that), so every value can be read before anything runs.

Ports are a block of 42 from one base (`--base-port`, default 17100), laid out so that the
tens digit names the process:

    base+0  PostgreSQL      base+1  Redis       base+2  Kafka broker   base+3  Prometheus
    base+10 server-1 gRPC   +11 dashboard       +12 health             +13 metrics
    base+20 server-2 gRPC   +21 dashboard       +22 health             +23 metrics
    base+30 worker-1 health +31 metrics
    base+40 worker-2 health +41 metrics

The default block sits below the kernel's ephemeral range and clear of `make run`'s ports
(50051, 8000, 8080, 8081, 9090, 9091), so both can run at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_PORT = 17100
PORT_SPAN = 42
"""Ports from the base that the cluster may use (base .. base+41)."""
HOST = "127.0.0.1"
"""Everything listens on loopback: a development cluster, not a network service."""

SERVER_COUNT = 2
WORKER_IMPORTS = ("jobq.demo_tasks",)
"""Modules the workers trust, as `make run`'s worker does (the README's tour uses them)."""


@dataclass(frozen=True)
class ServerPorts:
    name: str
    grpc: int
    dashboard: int
    health: int
    metrics: int

    @property
    def grpc_addr(self) -> str:
        return f"{HOST}:{self.grpc}"


@dataclass(frozen=True)
class WorkerPorts:
    name: str
    server: ServerPorts
    """The server this worker connects to (worker.server_addr names exactly one)."""
    health: int
    metrics: int


@dataclass(frozen=True)
class Layout:
    """Every port of the cluster, from `base`."""

    base: int

    @property
    def postgres(self) -> int:
        return self.base

    @property
    def redis(self) -> int:
        return self.base + 1

    @property
    def kafka(self) -> int:
        return self.base + 2

    @property
    def prometheus(self) -> int:
        return self.base + 3

    @property
    def servers(self) -> list[ServerPorts]:
        return [
            ServerPorts(f"server-{n}", *(self.base + 10 * n + offset for offset in range(4)))
            for n in range(1, SERVER_COUNT + 1)
        ]

    @property
    def workers(self) -> list[WorkerPorts]:
        # One worker per server: a worker talks to one server address, so this way both
        # servers dispatch, and a job submitted to either can run on the other's worker (they
        # share the database).
        return [
            WorkerPorts(
                f"worker-{n}", server, self.base + 10 * (n + 2), self.base + 10 * (n + 2) + 1
            )
            for n, server in enumerate(self.servers, start=1)
        ]

    def all_ports(self) -> dict[str, int]:
        """Every listening port by what listens there, for the check before start."""
        ports = {
            "PostgreSQL": self.postgres,
            "Redis": self.redis,
            "Kafka": self.kafka,
            "Prometheus": self.prometheus,
        }
        for server in self.servers:
            ports |= {
                f"{server.name} gRPC": server.grpc,
                f"{server.name} dashboard": server.dashboard,
                f"{server.name} health": server.health,
                f"{server.name} metrics": server.metrics,
            }
        for worker in self.workers:
            ports |= {
                f"{worker.name} health": worker.health,
                f"{worker.name} metrics": worker.metrics,
            }
        return ports


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file as Compose reads them (`env_file`): blank lines and
    `#` comments skipped, no quoting, the value is everything after the first `=`."""
    settings: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{path}:{number}: not KEY=VALUE: {raw!r}")
        settings[key.strip()] = value
    return settings


def base_environment(environ: Mapping[str, str], shared: Mapping[str, str]) -> dict[str, str]:
    """What every jq-server and jq-worker starts from: this environment without its `JQ_*`
    variables, then the shared settings file. As with Compose, the cluster is defined by its
    files: a JQ_DB_DSN or JQ_GRPC_TLS_CERT left in the shell must not reconfigure it."""
    inherited = {key: value for key, value in environ.items() if not key.startswith("JQ_")}
    return {**inherited, **shared}


@dataclass(frozen=True)
class Backing:
    """Where the backing services are, as the servers reach them; None: not running."""

    db_port: int
    db_password: str | None
    redis_url: str | None
    redis_password: str | None
    kafka_bootstrap: str | None


def server_environment(
    base: Mapping[str, str],
    server: ServerPorts,
    backing: Backing,
    auth_tokens: str,
    session_secret_file: Path,
) -> dict[str, str]:
    """One jq-server's environment: `base` plus its ports, the database, Redis, Kafka and the
    tokens. The database password goes in JQ_DB_PASSWORD, not inside a DSN (a password in
    db.dsn gets a warning at start, and a DSN is easier to log by mistake)."""
    env = {
        **base,
        "JQ_GRPC_HOST": HOST,
        "JQ_GRPC_PORT": str(server.grpc),
        "JQ_DASHBOARD_HOST": HOST,
        "JQ_DASHBOARD_PORT": str(server.dashboard),
        "JQ_HEALTH_HOST": HOST,
        "JQ_HEALTH_PORT": str(server.health),
        "JQ_METRICS_HOST": HOST,
        "JQ_METRICS_PORT": str(server.metrics),
        "JQ_DB_HOST": HOST,
        "JQ_DB_PORT": str(backing.db_port),
        "JQ_DB_NAME": "postgres",
        "JQ_DB_USER": "postgres",
        "JQ_AUTH_TOKENS": auth_tokens,
        # One key for both replicas, as behind a load balancer: a login on one is valid on both.
        "JQ_DASHBOARD_SESSION_SECRET_FILE": str(session_secret_file),
    }
    if backing.db_password is not None:
        env["JQ_DB_PASSWORD"] = backing.db_password
    if backing.redis_url is not None:
        env |= {"JQ_REDIS_ENABLED": "true", "JQ_REDIS_URL": backing.redis_url}
        if backing.redis_password is not None:
            env["JQ_REDIS_PASSWORD"] = backing.redis_password
    if backing.kafka_bootstrap is not None:
        env |= {"JQ_KAFKA_ENABLED": "true", "JQ_KAFKA_BOOTSTRAP_SERVERS": backing.kafka_bootstrap}
    return env


def worker_environment(
    base: Mapping[str, str], worker: WorkerPorts, token_file: Path
) -> dict[str, str]:
    """One jq-worker's environment: `base` plus its server, its ports and its token file."""
    return {
        **base,
        "JQ_WORKER_SERVER_ADDR": worker.server.grpc_addr,
        "JQ_WORKER_HEALTH_PORT": str(worker.health),
        "JQ_WORKER_METRICS_PORT": str(worker.metrics),
        "JQ_HEALTH_HOST": HOST,
        "JQ_METRICS_HOST": HOST,
        "JQ_WORKER_TOKEN_FILE": str(token_file),
    }


SCRAPE_INTERVAL = "5s"
"""Shorter than Prometheus's 1m default: a local cluster is for watching things happen."""


def prometheus_config(layout: Layout, rules_dir: Path) -> str:
    """prometheus.yml scraping both servers and both workers, with every rules file of
    `rules_dir` (a glob: an empty or missing directory loads none, and is no error). Job names
    `jq-server` and `jq-worker`, as in Compose, so rules and dashboards match both."""
    servers = ", ".join(f"'{HOST}:{s.metrics}'" for s in layout.servers)
    workers = ", ".join(f"'{HOST}:{w.metrics}'" for w in layout.workers)
    return (
        "# Generated by tools/cluster.py (make cluster) at every start; edits are lost.\n"
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL}\n"
        f"  evaluation_interval: {SCRAPE_INTERVAL}\n"
        "rule_files:\n"
        f"  - '{rules_dir}/*.yml'\n"
        "scrape_configs:\n"
        "  - job_name: jq-server\n"
        f"    static_configs: [{{targets: [{servers}]}}]\n"
        "  - job_name: jq-worker\n"
        f"    static_configs: [{{targets: [{workers}]}}]\n"
    )
