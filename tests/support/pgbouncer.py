"""A real PgBouncer (the distribution's, `/usr/sbin/pgbouncer`) in front of the test PostgreSQL.

Each PgBouncer gets its own directory with a `pgbouncer.ini` and an auth file, listens on
127.0.0.1 at a free port (no Unix socket), forwards every database name to the test server
(`* = host=... port=...`, so each test's fresh database is reachable) and runs with the pooling
mode the test chooses and PgBouncer's defaults for everything else (LIFO server reuse, pool size
20), unless a test passes other settings.

Authentication: both test servers require SCRAM-SHA-256. The auth file holds the superuser's
SCRAM secret as PostgreSQL stores it (`pg_authid.rolpassword`), not the password, and
`auth_type = scram-sha-256`: PgBouncer 1.18 checks the client's SCRAM proof against that secret
and reuses the client's key to log in to PostgreSQL (SCRAM pass-through), so no plain-text
password is written anywhere. (`auth_type = md5` with the same secret also works: PgBouncer
switches to SCRAM for a SCRAM secret. An md5 secret could not log in to a SCRAM-only server.)

PgBouncer refuses to run as root; tests that run as root start it as `nobody`, with its files
owned by that user and readable by nobody else. Where the binary is missing the test is skipped
with a reason, except in CI (`CI=true`), which installs it: there the test fails.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn, Protocol
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from support.processes import free_port

PGBOUNCER = Path("/usr/sbin/pgbouncer")
RUN_AS = "nobody"
START_TIMEOUT_S = 10.0
_START_ATTEMPTS = 3  # a free port can be taken by someone else before PgBouncer binds it

PoolMode = Literal["session", "transaction", "statement"]


@dataclass
class PgBouncer:
    """A running PgBouncer on 127.0.0.1:`port` in `pool_mode`, its files in `directory`."""

    process: subprocess.Popen[bytes]
    port: int
    pool_mode: PoolMode
    directory: Path

    def through(self, dsn: str) -> str:
        """`dsn` (a DSN of the test server) with PgBouncer's address instead: the same
        database, user and password, through this PgBouncer."""
        parts = urlsplit(dsn)
        credentials, _, _ = parts.netloc.rpartition("@")
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def log(self) -> str:
        try:
            return (self.directory / "pgbouncer.log").read_text(errors="replace")
        except OSError:
            return "(no pgbouncer.log)"

    def stop(self) -> None:
        """SIGTERM (PgBouncer's immediate shutdown), then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


PgBouncerFactory = Callable[..., PgBouncer]


class _Upstream(Protocol):
    """What the fixture needs of the `pg_server` fixture's PgServer."""

    admin_dsn: str


def require_pgbouncer() -> Path:
    """The PgBouncer binary; skips the test when it is missing (fails it in CI)."""
    if not os.access(PGBOUNCER, os.X_OK):
        _unavailable(f"{PGBOUNCER} is not installed (apt-get install pgbouncer)")
    return PGBOUNCER


def scram_secret(admin_dsn: str) -> str:
    """The SCRAM secret PostgreSQL stores for the user of `admin_dsn` (a superuser DSN). Runs its
    own event loop: call it where none runs (a fixture's setup, not an async test)."""
    return asyncio.run(_stored_secret(admin_dsn, urlsplit(admin_dsn).username or "postgres"))


def start_pgbouncer(
    admin_dsn: str,
    secret: str,
    pool_mode: PoolMode,
    directory: Path,
    settings: Mapping[str, str] | None = None,
) -> PgBouncer:
    """Start PgBouncer in front of the server of `admin_dsn` for its user, whose stored SCRAM
    secret is `secret` (see `scram_secret`), and wait until it accepts connections. `settings`
    are more `[pgbouncer]` lines."""
    binary = require_pgbouncer()
    upstream = urlsplit(admin_dsn)
    user = upstream.username or "postgres"
    owner = _run_as()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    auth_file = directory / "userlist.txt"
    _write_private(auth_file, f'"{user}" "{secret}"\n', owner)
    log_path = directory / "pgbouncer.log"
    log = "(not started)"
    for _ in range(_START_ATTEMPTS):
        port = free_port()
        config = directory / "pgbouncer.ini"
        lines = [
            "[databases]",
            f"* = host={upstream.hostname} port={upstream.port or 5432}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {port}",
            "unix_socket_dir =",
            "auth_type = scram-sha-256",
            f"auth_file = {auth_file}",
            f"pool_mode = {pool_mode}",
            *(f"{name} = {value}" for name, value in (settings or {}).items()),
        ]
        _write_private(config, "\n".join(lines) + "\n", owner)
        with open(log_path, "wb") as log_file:  # PgBouncer logs to stderr without `logfile`
            process = subprocess.Popen(
                [str(binary), str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd="/",
                **_as_user(owner),
            )
        bouncer = PgBouncer(process, port, pool_mode, directory)
        if _wait_listening(bouncer):
            return bouncer
        bouncer.stop()
        log = bouncer.log()
    raise RuntimeError(f"PgBouncer did not start:\n{log}")


@pytest.fixture(name="pgbouncers")
def pgbouncers_fixture(pg_server: _Upstream) -> Iterator[PgBouncerFactory]:
    """Start PgBouncers in front of the test PostgreSQL: `pgbouncers("transaction")`, or with
    more settings, `pgbouncers("transaction", {"server_round_robin": "1"})`. All are stopped at
    teardown. (Import this into a test module to use it.)"""
    require_pgbouncer()
    admin_dsn = pg_server.admin_dsn
    secret = scram_secret(admin_dsn)
    # Not under tmp_path: a root pytest session keeps /tmp/pytest-of-root at mode 0700, out of
    # the reach of the unprivileged user that runs PgBouncer. Each PgBouncer's own directory
    # below is its user's, mode 0700; this one only lets it pass.
    base = Path(tempfile.mkdtemp(prefix="jobq-test-pgbouncer-"))
    base.chmod(0o711)
    started: list[PgBouncer] = []

    def start(pool_mode: PoolMode, settings: Mapping[str, str] | None = None) -> PgBouncer:
        directory = base / str(len(started))
        bouncer = start_pgbouncer(admin_dsn, secret, pool_mode, directory, settings)
        started.append(bouncer)
        return bouncer

    try:
        yield start
    finally:
        for bouncer in started:
            bouncer.stop()
        shutil.rmtree(base, ignore_errors=True)


async def _stored_secret(admin_dsn: str, user: str) -> str:
    conn = await asyncpg.connect(admin_dsn)
    try:
        secret: str | None = await conn.fetchval(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1", user
        )
    finally:
        await conn.close()
    if secret is None or not secret.startswith("SCRAM-SHA-256$"):
        raise RuntimeError(
            f"the test server's user {user!r} has no SCRAM-SHA-256 password; the PgBouncer "
            "fixture passes SCRAM through and needs one"
        )
    return secret


def _run_as() -> pwd.struct_passwd | None:
    """Whom PgBouncer runs as: `nobody` when the tests run as root (PgBouncer refuses root),
    else the tests' own user (None: no switch)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(RUN_AS)
    except KeyError:
        _unavailable(f"PgBouncer refuses to run as root and this system has no user {RUN_AS!r}")


def _as_user(owner: pwd.struct_passwd | None) -> dict[str, object]:
    if owner is None:
        return {}
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


def _write_private(path: Path, text: str, owner: pwd.struct_passwd | None) -> None:
    """Write `text` readable by PgBouncer's user only (the auth file holds a secret)."""
    path.write_text(text)
    path.chmod(0o600)
    if owner is not None:
        os.chown(path.parent, owner.pw_uid, owner.pw_gid)
        os.chown(path, owner.pw_uid, owner.pw_gid)


def _wait_listening(bouncer: PgBouncer) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and bouncer.process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", bouncer.port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def _unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine; in CI (CI=true), which installs PgBouncer, fail."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run this test, but {reason}")
    pytest.skip(reason)
