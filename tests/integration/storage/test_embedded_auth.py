"""The embedded PostgreSQL asks every client for the superuser's password (SCRAM-SHA-256).

A local process that reaches its socket or port (a job on a worker, say) gets nowhere without
the password, which lives in a 0600 file in the data directory; `dsn()` carries it. Data
directories made before passwords (`initdb --auth=trust`) are converted on their next start,
their data intact. Every test runs a real server, as root (the server then runs as the
`embedded_postgres` system user) or as a normal user.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import pytest
from support.processes import free_port

from jobq.storage.embedded import EmbeddedPostgres, bin_dir
from jobq.storage.embedded_auth import PASSWORD_FILE_NAME, EmbeddedPostgresError

REFUSED = re.compile(r"password authentication failed|no password supplied")


class BeforePasswords(EmbeddedPostgres):
    """EmbeddedPostgres as jobq shipped it before passwords: `initdb --auth=trust`, no file.

    It overrides two internals on purpose: the initdb call, and the check that would convert.
    """

    def _initdb(self, pending: Path) -> None:
        self._run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ]
        )

    def _hba_without_trust(self) -> str | None:
        return None


@pytest.fixture
def base_dir() -> Iterator[Path]:
    # Not under tmp_path: see the pg_server fixture (a root pytest session resets the mode of
    # /tmp/pytest-of-root, which would cut the server's system user off).
    base = Path(tempfile.mkdtemp(prefix="jobq-test-auth-"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def no_password_anywhere(monkeypatch: pytest.MonkeyPatch, base_dir: Path) -> None:
    """Neither asyncpg nor libpq may find a password except where a test passes one."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(base_dir / "no-such-passfile"))


@pytest.fixture
def server(base_dir: Path, no_password_anywhere: None) -> Iterator[EmbeddedPostgres]:
    """A fresh embedded server that also listens on loopback TCP."""
    pg = EmbeddedPostgres(base_dir / "pg", port=free_port(), tcp=True, settings={"fsync": "off"})
    pg.start()
    try:
        yield pg
    finally:
        pg.stop(mode="immediate")


def password_of(pg: EmbeddedPostgres) -> str:
    return pg.password_file.read_text().strip()


def without_password(dsn: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", "@")))


def socket_dsn(pg: EmbeddedPostgres) -> str:
    """The DSN over the Unix socket, also for a server that listens on TCP."""
    return EmbeddedPostgres(pg.data_dir, port=pg.port).dsn()


def psql(pg: EmbeddedPostgres, sql: str, password: str | None = None) -> tuple[int, str]:
    """Run `sql` with the wheel's psql over the socket, as this test's own user."""
    env = {name: value for name, value in os.environ.items() if name != "PGPASSWORD"}
    if password is not None:
        env["PGPASSWORD"] = password  # the child's environment only, never its argv
    where = ["-h", str(pg.socket_dir), "-p", str(pg.port), "-U", "postgres", "-d", "postgres"]
    result = subprocess.run(
        [str(bin_dir() / "psql"), "-X", "-w", "-At", *where, "-c", sql],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def hba_methods(pg: EmbeddedPostgres) -> list[str]:
    """The authentication method of every rule in pg_hba.conf (initdb's rules have no options)."""
    lines = (pg.data_dir / "pg_hba.conf").read_text().splitlines()
    rules = (line.split("#", 1)[0].split() for line in lines)
    return [words[-1] for words in rules if words]


async def fetch_one(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def assert_requires_password(pg: EmbeddedPostgres) -> None:
    assert hba_methods(pg), "pg_hba.conf has no rules"
    assert set(hba_methods(pg)) == {"scram-sha-256"}
    info = pg.password_file.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == pg.data_dir.stat().st_uid
    code, output = psql(pg, "SELECT 1")
    assert code != 0
    assert REFUSED.search(output), output


# --- a new data directory --------------------------------------------------------------------


async def test_the_password_file_is_private_and_no_rule_trusts(server: EmbeddedPostgres) -> None:
    assert server.password_file == server.data_dir / PASSWORD_FILE_NAME
    assert_requires_password(server)
    assert len(password_of(server)) >= 32
    assert not list(server.data_dir.parent.glob(f".{server.data_dir.name}.password*"))


async def test_a_client_without_the_password_is_refused(server: EmbeddedPostgres) -> None:
    for dsn in (socket_dsn(server), server.dsn()):  # the Unix socket, then TCP
        assert urlsplit(dsn).password
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(without_password(dsn))
    code, output = psql(server, "SELECT 1")
    assert code != 0
    assert REFUSED.search(output), output


async def test_the_dsn_and_the_password_file_let_a_client_in(server: EmbeddedPostgres) -> None:
    for dsn in (socket_dsn(server), server.dsn()):
        assert unquote(urlsplit(dsn).password or "") == password_of(server)
        assert await fetch_one(dsn, "SELECT current_user") == "postgres"
    assert psql(server, "SELECT 40 + 2", password=password_of(server)) == (0, "42\n")


async def test_a_wrong_password_is_refused(server: EmbeddedPostgres) -> None:
    parts = urlsplit(socket_dsn(server))
    wrong = parts._replace(netloc=parts.netloc.replace(parts.password or "", "not-it"))
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(urlunsplit(wrong))


async def test_starting_again_keeps_the_password(server: EmbeddedPostgres) -> None:
    password = password_of(server)
    server.restart()
    assert password_of(server) == password
    assert await fetch_one(server.dsn(), "SELECT 1") == 1


async def test_a_missing_password_file_is_a_clear_error_and_nothing_starts(
    server: EmbeddedPostgres,
) -> None:
    server.stop()
    server.password_file.unlink()
    with pytest.raises(EmbeddedPostgresError, match=re.escape(str(server.password_file))):
        server.start()
    assert not server.is_running()


# --- a data directory from before passwords ---------------------------------------------------


def start_before_passwords(data_dir: Path, port: int) -> BeforePasswords:
    old = BeforePasswords(data_dir, port=port, settings={"fsync": "off"})
    old.start()
    assert set(hba_methods(old)) == {"trust"}
    assert not old.password_file.exists()
    return old


async def write_jobs(old: EmbeddedPostgres) -> None:
    dsn = old.dsn()
    assert urlsplit(dsn).password is None  # trust: no password needed, none known
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE DATABASE jobq")
    finally:
        await conn.close()
    conn = await asyncpg.connect(old.dsn("jobq"))
    try:
        await conn.execute("CREATE TABLE jobs (id int PRIMARY KEY, payload text)")
        await conn.execute("INSERT INTO jobs VALUES (1, 'kept'), (2, 'also kept')")
    finally:
        await conn.close()


async def assert_jobs_kept(pg: EmbeddedPostgres) -> None:
    payloads = "SELECT string_agg(payload, ',' ORDER BY id) FROM jobs"
    assert await fetch_one(pg.dsn("jobq"), payloads) == "kept,also kept"


async def test_a_stopped_trust_data_directory_is_converted_on_start(
    base_dir: Path, no_password_anywhere: None
) -> None:
    old = start_before_passwords(base_dir / "pg", free_port())
    try:
        await write_jobs(old)
        old.stop()
        pg = EmbeddedPostgres(old.data_dir, port=old.port)
        assert pg.start() is True
        assert_requires_password(pg)
        await assert_jobs_kept(pg)
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(without_password(pg.dsn("jobq")))
        # Only a SCRAM verifier went to the server; the password is in no log of it.
        assert password_of(pg) not in (pg.data_dir / "server.log").read_text()
        # The next start finds nothing left to convert.
        pg.restart()
        assert_requires_password(pg)
        await assert_jobs_kept(pg)
    finally:
        old.stop(mode="immediate")


async def test_a_running_trust_server_is_converted_in_place(
    base_dir: Path, no_password_anywhere: None
) -> None:
    old = start_before_passwords(base_dir / "pg", free_port())
    try:
        await write_jobs(old)
        pg = EmbeddedPostgres(old.data_dir, port=old.port)
        assert pg.start() is False  # already running: converted without a restart
        assert_requires_password(pg)
        await assert_jobs_kept(pg)
    finally:
        old.stop(mode="immediate")


async def test_two_concurrent_starts_convert_once_and_agree_on_the_password(
    base_dir: Path, no_password_anywhere: None
) -> None:
    old = start_before_passwords(base_dir / "pg", free_port())
    try:
        await write_jobs(old)
        old.stop()
        # flock locks belong to the open file, so two threads contend like two processes.
        results: list[bool | BaseException] = []

        def start() -> None:
            try:
                results.append(EmbeddedPostgres(old.data_dir, port=old.port).start())
            except BaseException as exc:
                results.append(exc)

        threads = [threading.Thread(target=start) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sorted(results, key=str) == [False, True]
        pg = EmbeddedPostgres(old.data_dir, port=old.port)
        assert_requires_password(pg)
        await assert_jobs_kept(pg)
    finally:
        old.stop(mode="immediate")


async def test_a_start_interrupted_after_storing_the_password_resumes_with_it(
    base_dir: Path, no_password_anywhere: None
) -> None:
    old = start_before_passwords(base_dir / "pg", free_port())
    try:
        await write_jobs(old)
        old.stop()
        # What a crash right after storing the password leaves: the file, and trust rules.
        owner = old.data_dir.stat()
        old.password_file.write_text("chosen-before-the-crash\n")
        old.password_file.chmod(0o600)
        if os.geteuid() == 0:
            os.chown(old.password_file, owner.st_uid, owner.st_gid)
        pg = EmbeddedPostgres(old.data_dir, port=old.port)
        pg.start()
        assert password_of(pg) == "chosen-before-the-crash"
        assert_requires_password(pg)
        await assert_jobs_kept(pg)
    finally:
        old.stop(mode="immediate")


async def test_no_command_line_carries_the_password(
    base_dir: Path, no_password_anywhere: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every program's argv is visible to all users in `ps`: initdb, psql and pg_ctl get the
    password (or its verifier) through a 0600 file or stdin instead."""
    argvs: list[str] = []
    real_run = subprocess.run

    def recording_run(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        argvs.append(" ".join(map(str, argv)))
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording_run)
    new = EmbeddedPostgres(base_dir / "new", port=free_port(), settings={"fsync": "off"})
    old = start_before_passwords(base_dir / "old", free_port())
    try:
        new.start()
        converted = EmbeddedPostgres(old.data_dir, port=old.port)
        converted.start()
        assert any("--pwfile=" in argv for argv in argvs)
        assert any("psql" in argv for argv in argvs)
        for password in (password_of(new), password_of(converted)):
            assert not [argv for argv in argvs if password in argv]
    finally:
        new.stop(mode="immediate")
        old.stop(mode="immediate")
