"""No index of jobs names a column that a job's lifecycle updates (V22), so that each of a
job's status updates can be HOT: PostgreSQL writes an update as a heap-only tuple only when no
index uses a changed column, as a key, in an expression or in a predicate (whatever the
predicate's value). The columns the lifecycle updates are read from the SET lists of every
`UPDATE jobs` in the named queries, the indexed ones from the catalog (pg_index, and pg_depend
for the columns of expressions and predicates), so a new statement or a new index is checked
without anyone updating a list."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

import jobq.storage.queries

SQL_DIR = Path(jobq.storage.queries.__file__).with_name("sql")

_UPDATE = re.compile(r"\bUPDATE\s+jobs(?:\s+(?:AS\s+)?(?!SET\b)\w+)?\s+SET\s", re.IGNORECASE)
_SET_END = re.compile(r"^\s*(FROM|WHERE|RETURNING)\b", re.IGNORECASE | re.MULTILINE)
_ASSIGNED = re.compile(r"(?:^|,)\s*(\w+)\s*=(?!=)")

# The columns every lifecycle statement must be seen to update: if the parse misses these,
# the parse is broken, not the schema.
SURELY_UPDATED = {"status", "worker_id", "interruptions", "not_before", "cancel_requested_at"}

INDEXED_COLUMNS = """
SELECT i.indexrelid::regclass::text AS index, a.attname AS column_name
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey::int2[]) AS k(attnum)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid IN (SELECT relid FROM pg_partition_tree('jobs')) AND k.attnum > 0
UNION
SELECT i.indexrelid::regclass::text, a.attname
FROM pg_index i
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
                AND d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indrelid
                AND d.refobjsubid > 0
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = d.refobjsubid
WHERE i.indrelid IN (SELECT relid FROM pg_partition_tree('jobs'))
"""


def _top_level_commas(text: str) -> str:
    """`text` with the contents of parentheses and quotes blanked, so only the SET list's own
    commas and `=` signs remain."""
    out, depth, quoted = [], 0, False
    for ch in text:
        if ch == "'":
            quoted = not quoted
            out.append(" ")
        elif quoted:
            out.append(" ")
        elif ch == "(":
            depth += 1
            out.append(" ")
        elif ch == ")":
            depth -= 1
            out.append(" ")
        else:
            out.append(ch if depth == 0 else " ")
    return "".join(out)


def lifecycle_updated_columns() -> set[str]:
    """Every column some `UPDATE jobs` of the named queries assigns."""
    columns: set[str] = set()
    for path in sorted(SQL_DIR.glob("*.sql")):
        text = "\n".join(
            line.split("--", 1)[0] for line in path.read_text().splitlines()
        )  # comments out
        for match in _UPDATE.finditer(text):
            rest = text[match.end() :]
            end = _SET_END.search(rest)
            set_list = _top_level_commas(rest[: end.start() if end else len(rest)])
            # CASE ... END blocks hold `=` comparisons: keep only what follows a comma or the
            # start, which an assignment always does
            set_list = re.sub(r"\bCASE\b.*?\bEND\b", " ", set_list, flags=re.DOTALL)
            columns |= {m.group(1).lower() for m in _ASSIGNED.finditer(set_list)}
    return columns


async def _violations(conn: asyncpg.Connection, updated: set[str]) -> set[tuple[str, str]]:
    rows = await conn.fetch(INDEXED_COLUMNS)
    return {(r["index"], r["column_name"]) for r in rows if r["column_name"] in updated}


def test_the_parse_finds_the_lifecycle_columns() -> None:
    updated = lifecycle_updated_columns()
    assert updated >= SURELY_UPDATED, updated
    # a column no lifecycle statement assigns is not reported as updated
    assert not updated & {"job_id", "queue_name", "payload", "idempotency_key", "created_at"}


async def test_no_index_of_jobs_names_a_column_the_lifecycle_updates(db_dsn: str) -> None:
    updated = lifecycle_updated_columns()
    conn = await asyncpg.connect(db_dsn)
    try:
        assert await _violations(conn, updated) == set()
        indexed = {r["index"] for r in await conn.fetch(INDEXED_COLUMNS)}
        # the one kept (its column never changes in a job's life), on the parent and every
        # partition (V24: the idempotency keys and schedule ticks have tables of their own)
        partitions = await conn.fetch(
            "SELECT relid::regclass::text AS name FROM pg_partition_tree('jobs') WHERE isleaf"
        )
        assert len(partitions) > 1
        pkeys = {"jobs_pkey", "jobs_legacy_pkey"} | {
            f"{p['name']}_pkey" for p in partitions if p["name"] != "jobs_legacy"
        }
        assert indexed == pkeys
    finally:
        await conn.close()


async def test_an_index_naming_a_lifecycle_column_anywhere_is_caught(db_dsn: str) -> None:
    """The check fails for each way an index can name a column: as a key, in a predicate, in
    an expression (the indexes are created in a transaction that is rolled back)."""
    updated = lifecycle_updated_columns()
    conn = await asyncpg.connect(db_dsn)
    try:
        tr = conn.transaction()
        await tr.start()
        try:
            await conn.execute("CREATE INDEX back_as_key ON jobs (worker_id)")
            await conn.execute(
                "CREATE INDEX back_in_predicate ON jobs (queue_name, created_at)"
                " WHERE status = 'PENDING'"
            )
            await conn.execute("CREATE INDEX back_in_expression ON jobs ((interruptions >= 2))")
            violations = await _violations(conn, updated)
            # the parent's index, and one on each of jobs' partitions (V24)
            assert {v for v in violations if v[0].startswith("back_")} == {
                ("back_as_key", "worker_id"),
                ("back_in_predicate", "status"),
                ("back_in_expression", "interruptions"),
            }
            leaves = await conn.fetchval(
                "SELECT count(*) FROM pg_partition_tree('jobs') WHERE isleaf"
            )
            assert len(violations) == 3 * (1 + leaves)
        finally:
            await tr.rollback()
        assert await _violations(conn, updated) == set()
    finally:
        await conn.close()


async def test_jobs_leaves_room_on_its_pages_for_a_jobs_later_versions(db_dsn: str) -> None:
    """HOT needs the new version on the old one's page: jobs is filled to its fillfactor only
    (V22 says why the value)."""
    conn = await asyncpg.connect(db_dsn)
    try:
        # every partition of jobs (V24: the parent cannot carry storage parameters)
        leaves = await conn.fetch(
            "SELECT c.relname, c.reloptions FROM pg_partition_tree('jobs') t"
            " JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf"
        )
        assert len(leaves) > 1
        for leaf in leaves:
            options = leaf["reloptions"]
            fillfactor = dict(o.split("=", 1) for o in options or []).get("fillfactor", "100")
            assert int(fillfactor) < 100, leaf["relname"]
    finally:
        await conn.close()
