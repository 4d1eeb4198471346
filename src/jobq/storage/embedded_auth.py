"""Password authentication for the embedded PostgreSQL: the superuser's password and pg_hba.conf.

The server asks every client for the superuser's password (SCRAM-SHA-256), so a local process
that reaches the socket or port, such as a job on a worker, cannot read the jobs without it. The
password is generated when the data directory is created and kept in `PASSWORD_FILE_NAME`
inside it (mode 0600, owned like the data directory); `EmbeddedPostgres.dsn()` carries it. A data
directory made by an earlier version with `trust` authentication is converted on its next start.

`jobq.storage.embedded` runs the server and calls in here for these files and texts; the steps
that need the running server (setting the role's password, reloading) stay with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from jobq.domain.errors import JobqError

PASSWORD_FILE_NAME = "jobq-superuser.password"  # noqa: S105 (a file name, not a secret)
"""The superuser's password, in the data directory: only its owner (and root) may read it."""
AUTH_METHOD = "scram-sha-256"
"""What pg_hba.conf asks of every client: initdb's `--auth`, and what `trust` rules become."""
_SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)


class EmbeddedPostgresError(JobqError):
    """The embedded PostgreSQL could not be initialised, started or stopped.

    Defined here, in the module that `jobq.storage.embedded` builds on, so that both raise the
    one error their callers catch; callers import it from `jobq.storage.embedded`.
    """


def pending_password_file(data_dir: Path) -> Path:
    """Where a new data directory's password waits next to it while initdb runs.

    initdb wants an empty data directory, so the password moves in only once initdb is done.
    """
    return data_dir.parent / f".{data_dir.name}.password"


def create_password(path: Path, owner: tuple[int, int]) -> str:
    """Generate a new superuser password and store it in `path` for `owner` alone."""
    password = secrets.token_urlsafe(32)
    write_private(path, password + "\n", owner)
    return password


def read_password(path: Path) -> str | None:
    """The password stored in `path`; None when the data directory has none (yet)."""
    try:
        password = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EmbeddedPostgresError(
            f"cannot read the password file {path}: {exc.strerror}"
        ) from None
    if not password:
        raise EmbeddedPostgresError(f"the password file {path} is empty")
    return password


def hba_without_trust(data_dir: Path, password_file: Path) -> str | None:
    """pg_hba.conf converted to passwords when it still trusts anyone, else None.

    Checked before the server starts: without the password file, a server that asks for
    the password is of no use to anybody.
    """
    current = (data_dir / "pg_hba.conf").read_text()
    converted = _require_password(current)
    if converted == current and read_password(password_file) is None:
        raise EmbeddedPostgresError(
            f"PostgreSQL in {data_dir} requires a password, but its password file "
            f"{password_file} is missing; restore that file (or remove the data "
            "directory to start afresh, losing its jobs)"
        )
    return None if converted == current else converted


def scram_verifier(password: str) -> str:
    """What PostgreSQL stores for `password` (RFC 7677), so the password itself is never sent.

    SASLprep is left out: it leaves the generated passwords (printable ASCII) unchanged.
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _SCRAM_ITERATIONS)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def write_private(path: Path, text: str, owner: tuple[int, int]) -> None:
    """Replace `path` with `text`, readable by `owner` alone (mode 0600) from the first byte."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        if os.geteuid() == 0:
            os.fchown(fd, *owner)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    temporary.replace(path)


def passwordless_env() -> dict[str, str]:
    """This process's environment with no password for libpq to find (no PGPASSWORD, no
    ~/.pgpass): a client run with it shows whether the server lets anyone in without one."""
    env = {name: value for name, value in os.environ.items() if name != "PGPASSWORD"}
    env["PGPASSFILE"] = "/nonexistent/jobq-no-passfile"
    return env


def _require_password(hba: str) -> str:
    """pg_hba.conf text with every `trust` rule turned into a scram-sha-256 one."""
    lines = []
    for line in hba.splitlines(keepends=True):
        rule = line.split("#", 1)[0]
        # The method is a rule's last word that is not an option (name=value).
        words = [word for word in re.finditer(r"\S+", rule) if "=" not in word.group()]
        if len(words) > 1 and words[-1].group() == "trust":
            method = words[-1]
            line = line[: method.start()] + AUTH_METHOD + line[method.end() :]
        lines.append(line)
    return "".join(lines)
