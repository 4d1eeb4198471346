"""Which PostgreSQL the tests run against (JQ_TEST_POSTGRES, see tests/conftest.py), and a
server of a test's own of that kind: one it may stop (`stoppable_postgres`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from jobq.storage.embedded import EmbeddedPostgres, system_bin_dir
from support.processes import free_port

TARGETS = ("embedded", "system")


def postgres_target() -> str:
    """JQ_TEST_POSTGRES: which PostgreSQL the tests start (see the module docstring)."""
    target = os.environ.get("JQ_TEST_POSTGRES", "embedded") or "embedded"
    if target not in TARGETS:
        raise pytest.UsageError(
            f"JQ_TEST_POSTGRES must be one of {', '.join(TARGETS)}, got {target!r}"
        )
    return target


def local_postgres(data_dir: Path, target: str) -> EmbeddedPostgres:
    """An unstarted server for `target` in `data_dir`, on a free loopback port."""
    if target == "system":
        binaries = system_bin_dir()
        if binaries is None:
            raise pytest.UsageError(
                "JQ_TEST_POSTGRES=system needs the distribution's PostgreSQL server: "
                "apt-get install postgresql"
            )
        # The package's defaults, JIT included: exactly what a team's server runs.
        return EmbeddedPostgres(data_dir, port=free_port(), tcp=True, binaries=binaries)
    # Durability off: test data is thrown away, and fsyncs would dominate the run time.
    return EmbeddedPostgres(
        data_dir,
        port=free_port(),
        tcp=True,
        settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
    )


@contextmanager
def stoppable_postgres(prefix: str) -> Iterator[EmbeddedPostgres]:
    """A started PostgreSQL of the suite's target that a test (or a suite) has to itself, so
    that stopping it, as an outage test does, disturbs no other test; stopped (immediately) and
    removed when the block ends. Its data directory is under a new temporary directory named
    `prefix`..., not under tmp_path: another root pytest session resets /tmp/pytest-of-root
    to 0700, which would lock the server's system user out of its data directory."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    server = local_postgres(base / "data", postgres_target())
    server.start()
    try:
        yield server
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


async def create_database(postgres: EmbeddedPostgres, name: str = "jobq") -> str:
    """Create database `name` on `postgres` (jq-server migrates it when it starts); its DSN."""
    admin = await asyncpg.connect(postgres.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return postgres.dsn(name)
