"""Fixtures of the fault suite: one PostgreSQL of the suite's target for the whole run (the
scenario that stops it starts it again), a fresh database and a `Cluster` per scenario."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from fault.cluster import Cluster
from support.postgres import create_database, postgres_target, stoppable_postgres

from jobq.storage.embedded import EmbeddedPostgres


@pytest.fixture(scope="session")
def fault_postgres() -> Iterator[EmbeddedPostgres]:
    """The suite's own PostgreSQL (JQ_TEST_POSTGRES chooses which), so that stopping it
    disturbs no other test."""
    with stoppable_postgres("jobq-fault-pg-") as server:
        yield server


@pytest.fixture
async def cluster(
    fault_postgres: EmbeddedPostgres, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Cluster]:
    """An empty cluster on a new database (the servers migrate it when they start)."""
    if not fault_postgres.is_running():  # a scenario before this one failed to restart it
        fault_postgres.start()
    name = f"fault_{uuid.uuid4().hex[:12]}"
    dsn = await create_database(fault_postgres, name)
    scenario = f"{request.node.name} pg={postgres_target()}"
    built = Cluster(scenario, dsn, tmp_path, {})
    try:
        yield built
    finally:
        await built.close()
        if not fault_postgres.is_running():
            fault_postgres.start()
        admin = await asyncpg.connect(fault_postgres.dsn())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
