"""A PostgreSQL cluster under Patroni on loopback, for the failover test: one etcd and two
Patroni nodes, a primary and a synchronous standby (`synchronous_mode_strict`), from the
distribution's packages (apt-get install patroni etcd-server postgresql).

What it gives a test: a multi-host DSN that libpq and asyncpg resolve to whichever node is
primary now (`target_session_attrs=read-write`), the roles as Patroni reports them (its REST
API's /cluster), and the fault itself: SIGKILL of the primary's postmaster.

The Patroni settings are the fast end of what Patroni accepts (loop_wait 1 s, ttl 20 s, the
smallest it allows) and `primary_start_timeout: 0`: Patroni fails over at once when the
primary's PostgreSQL dies instead of first trying to restart it on the same node for 300 s
(its default, right for a flapping network but not what this test is about). The killed node
comes back as the new primary's standby (pg_rewind when its timeline diverged); until it
does, `synchronous_mode_strict` makes the new primary hold every commit, so no write is
acknowledged that only one node has. That wait is part of the recovery time the test reports;
with a second standby (`standbys=2`) the new primary has a synchronous standby without it.

PostgreSQL refuses to run as root, and Patroni runs its binaries itself, so as root Patroni runs
as the `postgres` system user of the distribution's package (jobq's embedded server uses a user
of its own in the same way). Everything lives in one temporary directory, on free ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from jobq.storage.embedded import system_bin_dir
from support.processes import free_port

PATRONI = "/usr/bin/patroni"
ETCD = "/usr/bin/etcd"
SCOPE = "jobq-failover"
RUN_AS = "postgres"
"""The distribution's PostgreSQL system user, which Patroni runs as when the tests are root."""


def missing_programs() -> list[str]:
    """The packages this harness needs that are not installed (for a clear failure)."""
    missing = []
    if not Path(PATRONI).exists():
        missing.append("patroni")
    if not Path(ETCD).exists():
        missing.append("etcd-server")
    if system_bin_dir() is None:
        missing.append("postgresql")
    return missing


@dataclass
class PatroniNode:
    """One Patroni process and the PostgreSQL it runs, in `base/<name>`."""

    name: str
    base: Path
    pg_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.base / self.name / "data"

    @property
    def log(self) -> Path:
        return self.base / f"{self.name}.log"

    def postmaster_pid(self) -> int | None:
        """The pid of this node's running postmaster, from postmaster.pid; None when there is
        none. A pid file left by a dead server may name another process by now: the pid counts
        only if that process is a `postgres` running on this data directory."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().split("\n")
            pid = int(lines[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return None
        if not cmdline[0].endswith(b"postgres") or str(self.data_dir).encode() not in cmdline:
            return None
        return pid


class PatroniCluster:
    """etcd and Patroni nodes (a primary and `standbys` standbys, one of them synchronous);
    `start()`, `wait_ready()`, then `dsn()`; `stop()` ends all."""

    def __init__(self, base: Path | None = None, *, standbys: int = 1) -> None:
        # A short path of its own: PostgreSQL's Unix sockets live in it (108-byte sun_path).
        self.base = base or Path(tempfile.mkdtemp(prefix="jq-patroni-"))
        self.password = secrets.token_urlsafe(18)
        self.replication_password = secrets.token_urlsafe(18)
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.etcd: subprocess.Popen[bytes] | None = None
        self.nodes = [PatroniNode(f"node{n}", self.base) for n in range(1 + standbys)]
        self._user = _run_as()

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start etcd, then the nodes (node0 first, so it bootstraps the cluster)."""
        self.base.mkdir(parents=True, exist_ok=True)
        self._give_to_user(self.base)
        self._start_etcd()
        for node in self.nodes:
            self._start_node(node)

    def stop(self, logs_to: Path | None = None) -> None:
        """End every process (Patroni's PostgreSQL included) and remove the directory, after
        copying the logs (etcd's, each node's Patroni and PostgreSQL) into `logs_to`."""
        for node in self.nodes:
            _end(node.process)
            pid = node.postmaster_pid()
            if pid is not None:  # Patroni died first (or was killed): its PostgreSQL lives on
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        _end(self.etcd)
        if logs_to is not None:
            for log in self.base.glob("*.log"):
                shutil.copy(log, logs_to / f"patroni-{log.name}")
        shutil.rmtree(self.base, ignore_errors=True)

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        argv = [
            ETCD,
            "--name=etcd0",
            f"--data-dir={self.base / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=etcd0={peer}",
            "--initial-cluster-state=new",
        ]
        with open(self.base / "etcd.log", "wb") as out:
            self.etcd = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def _start_node(self, node: PatroniNode) -> None:
        config = self.base / f"{node.name}.yml"
        # JSON is YAML: no YAML library needed to write Patroni's configuration.
        config.write_text(json.dumps(self._config(node), indent=2))
        self._give_to_user(config)
        (self.base / node.name).mkdir(exist_ok=True)
        self._give_to_user(self.base / node.name)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self.base / node.name)}
        with open(node.log, "ab") as out:
            node.process = subprocess.Popen(
                [PATRONI, str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                user=self._user,
                cwd=self.base / node.name,
            )

    def _config(self, node: PatroniNode) -> dict[str, object]:
        binaries = system_bin_dir()
        assert binaries is not None, "apt-get install postgresql"
        return {
            "scope": SCOPE,
            "name": node.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"127.0.0.1:{node.api_port}",
                "connect_address": f"127.0.0.1:{node.api_port}",
            },
            "etcd3": {"hosts": [f"127.0.0.1:{self.etcd_port}"]},
            "bootstrap": {
                "dcs": {
                    "ttl": 20,
                    "loop_wait": 1,
                    "retry_timeout": 5,
                    "primary_start_timeout": 0,
                    "maximum_lag_on_failover": 1048576,
                    "synchronous_mode": True,
                    "synchronous_mode_strict": True,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": {
                            "wal_level": "replica",
                            "hot_standby": "on",
                            "wal_log_hints": "on",
                            "max_wal_senders": 5,
                            "max_replication_slots": 5,
                            "max_connections": 100,
                            # A rejoining standby asks the new primary for its replication
                            # slot before Patroni has made it there, and waits this long
                            # (default 5 s) to ask again: half of some failovers' time.
                            "wal_retrieve_retry_interval": "500ms",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
                "pg_hba": [
                    "local all all trust",
                    "host replication replicator 127.0.0.1/32 scram-sha-256",
                    "host all all 127.0.0.1/32 scram-sha-256",
                ],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{node.pg_port}",
                "connect_address": f"127.0.0.1:{node.pg_port}",
                "data_dir": str(node.data_dir),
                "bin_dir": str(binaries),
                "pgpass": str(self.base / node.name / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": self.password},
                    "replication": {
                        "username": "replicator",
                        "password": self.replication_password,
                    },
                    "rewind": {"username": "postgres", "password": self.password},
                },
                "parameters": {
                    "unix_socket_directories": str(self.base / node.name),
                    # Test data is thrown away; a SIGKILLed postmaster loses nothing the OS
                    # has (no machine crash here), and fsyncs would dominate the run time.
                    # Commits still wait for the standby (synchronous_commit stays on).
                    "fsync": "off",
                },
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
        }

    def _give_to_user(self, path: Path) -> None:
        if self._user is None:
            return
        entry = pwd.getpwnam(self._user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        # Patroni (as the system user) must reach the directory; root's tmp is 0700.
        for parent in path.parents:
            if parent == Path("/"):
                break
            with contextlib.suppress(OSError):
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)

    # --- what the test reads ---------------------------------------------------------------------

    def dsn(self, database: str = "postgres") -> str:
        """A multi-host DSN: libpq/asyncpg try both nodes and keep the one that takes writes.
        Carries the superuser's password: never log it."""
        hosts = ",".join(f"127.0.0.1:{node.pg_port}" for node in self.nodes)
        user = f"postgres:{quote(self.password, safe='')}"
        return (
            f"postgresql://{user}@/{quote(database)}?host={hosts}&target_session_attrs=read-write"
        )

    def members(self) -> dict[str, dict[str, object]]:
        """Patroni's view of the cluster by member name (role: leader, sync_standby,
        replica; state; timeline), asked of any node that answers."""
        for node in self.nodes:
            url = f"http://127.0.0.1:{node.api_port}/cluster"
            try:
                with urllib.request.urlopen(url, timeout=1.0) as reply:
                    body = json.load(reply)
            except (OSError, ValueError):
                continue
            return {str(m["name"]): m for m in body.get("members", [])}
        return {}

    def leader(self) -> PatroniNode | None:
        members = self.members()
        for node in self.nodes:
            member = members.get(node.name, {})
            if member.get("role") == "leader" and member.get("state") == "running":
                return node
        return None

    def sync_standby(self) -> PatroniNode | None:
        members = self.members()
        for node in self.nodes:
            member = members.get(node.name, {})
            if member.get("role") == "sync_standby" and member.get("state") in (
                "running",
                "streaming",
            ):
                return node
        return None

    def wait_ready(self, within: float = 90.0) -> tuple[PatroniNode, PatroniNode]:
        """Wait until there is a running leader and a synchronous standby; both."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self._check_alive()
            leader, standby = self.leader(), self.sync_standby()
            if leader is not None and standby is not None and leader is not standby:
                return leader, standby
            time.sleep(0.2)
        raise AssertionError(
            f"Patroni found no leader and sync standby within {within:g}s:"
            f" {self.members()} (logs: {self.base})"
        )

    def _check_alive(self) -> None:
        for name, process in [("etcd", self.etcd)] + [(n.name, n.process) for n in self.nodes]:
            if process is not None and process.poll() is not None:
                raise AssertionError(
                    f"{name} exited {process.returncode}: {_tail(self.base / f'{name}.log')}"
                )

    # --- the fault -------------------------------------------------------------------------------

    def kill_primary_postmaster(self) -> PatroniNode:
        """SIGKILL the current primary's postmaster (its Patroni lives on and fails over)."""
        leader = self.leader()
        assert leader is not None, f"no leader to kill: {self.members()}"
        pid = leader.postmaster_pid()
        assert pid is not None, f"{leader.name} has no postmaster.pid"
        os.kill(pid, signal.SIGKILL)
        return leader


def _run_as() -> str | None:
    return RUN_AS if os.geteuid() == 0 else None


def _end(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
