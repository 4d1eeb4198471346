"""The hot statements touch one shard, seen by PostgreSQL's own planner (issue 21, must-show 4):
the EXPLAIN-based twin of tests/unit/storage/test_single_shard_statements.py.

In a schema of its own, every colocated table that has a shard column is made again LIST-
partitioned by shard, two shards (`<table>_s0`, `<table>_s1`), and put first on the search
path, so the statements' unqualified names resolve to it (queues and the other reference tables
stay the real ones). Each hot statement is then planned with its shard parameter(s) set to 1 and
dummy values of the right types for the rest: partition pruning leaves in the plan only the
partitions a statement can touch, so a plan that names a `_s0` partition would read or lock
another shard's rows. Planned only (EXPLAIN without ANALYZE): nothing runs.

Left out: jobs_insert and jobs_insert_by_id, whose ON CONFLICT names a unique index on job_id
or idempotency_key alone, which a table partitioned by shard cannot have (the static check
covers them; Citus needs those indexes led by shard, docs/scaling.md section 3).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from support.single_shard import EXCEPTIONS, hot_statements, hot_tables, shard_parameters

from jobq.storage.queries import query

SCHEMA = "jq_two_shards"
NOT_PLANNED = {"jobs_insert", "jobs_insert_by_id"}
SCALARS: dict[str, object] = {
    "uuid": uuid.UUID(int=1),
    "text": "default",
    "int2": 1,
    "int4": 1,
    "int8": 1,
    "float8": 1.0,
    "bool": False,
    "timestamptz": datetime(2030, 1, 1, tzinfo=UTC),
    "bytea": b"",
    "job_status": "RUNNING",
}


@pytest.fixture
async def conn(db_dsn: str) -> Any:
    connection = await asyncpg.connect(db_dsn)
    try:
        tables = await connection.fetch(
            "SELECT table_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND column_name = 'shard'"
            "   AND table_name = ANY($1::text[])",
            sorted(hot_tables()),
        )
        await connection.execute(f"CREATE SCHEMA {SCHEMA}")
        for row in tables:
            name = row["table_name"]
            await connection.execute(
                f"CREATE TABLE {SCHEMA}.{name} (LIKE public.{name} INCLUDING DEFAULTS)"
                " PARTITION BY LIST (shard)"
            )
            for shard in (0, 1):
                await connection.execute(
                    f"CREATE TABLE {SCHEMA}.{name}_s{shard} PARTITION OF {SCHEMA}.{name}"
                    f" FOR VALUES IN ({shard})"
                )
        await connection.execute(f"SET search_path = {SCHEMA}, public")
        yield connection
    finally:
        await connection.close()


def _dummy(param: Any) -> object:
    """A value of an asyncpg parameter type (an array's type name is `_` and its element's)."""
    if param.kind == "array":
        return [SCALARS[param.name.removeprefix("_").removesuffix("[]")]]
    return SCALARS[param.name]


def _relations(plan: object) -> Iterator[tuple[str, str]]:
    """(relation, alias) of every node of a plan that names a relation."""
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            yield plan["Relation Name"], plan.get("Alias", "")
        for value in plan.values():
            yield from _relations(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _relations(item)


async def _touched(conn: asyncpg.Connection, name: str) -> list[tuple[str, str]]:
    sql = query(name)
    explain = f"EXPLAIN (FORMAT JSON) {sql}"
    statement = await conn.prepare(explain)
    shards = shard_parameters(sql, hot_tables())
    args = [
        1 if number in shards else _dummy(param)
        for number, param in enumerate(statement.get_parameters(), start=1)
    ]
    raw = await conn.fetchval(explain, *args)
    return list(_relations(json.loads(raw)))


def _excepted(name: str, alias: str) -> bool:
    """A partition's alias is its parent's alias with a suffix (`w_1`)."""
    return any((name, alias.rsplit("_", 1)[0]) == key or (name, alias) == key for key in EXCEPTIONS)


@pytest.mark.parametrize("name", [n for n in hot_statements() if n not in NOT_PLANNED])
async def test_the_plan_of_a_hot_statement_keeps_to_one_shards_partitions(
    conn: asyncpg.Connection, name: str
) -> None:
    touched = await _touched(conn, name)
    other_shard = [
        (relation, alias)
        for relation, alias in touched
        if relation.endswith("_s0") and not _excepted(name, alias)
    ]
    assert not other_shard, f"{name} reaches shard 0's partitions: {other_shard}"


async def test_a_statement_without_its_shard_filter_reaches_both_shards(
    conn: asyncpg.Connection,
) -> None:
    """The control: the planner does show a statement that is not single-shard."""
    touched = await _touched(conn, "jobs_expired_assignments")
    assert {r for r, _ in touched} >= {"held_jobs_s1", "jobs_s1"}, touched
    sql = query("jobs_expired_assignments").replace("AND j.shard = $4::smallint", "")
    raw = await conn.fetchval(
        f"EXPLAIN (FORMAT JSON) {sql}", 30.0, datetime(2030, 1, 1, tzinfo=UTC), 10, 1
    )
    relations = {r for r, _ in _relations(json.loads(raw))}
    assert {"jobs_s0", "jobs_s1"} <= relations, relations
