"""Every hot statement touches one shard (issue 21, must-show 4): the check of
tests/support/single_shard.py, run over the SQL of each statement in docs/scaling.md's "Hot
statements" table, with the hot (distributed, colocated) tables that document names. Both
lists come from the document, so a statement added to the table, or a table added to the
colocated ones, is checked without a change here; test_scaling_doc.py keeps the table complete.

A statement that is not single-shard fails, unless the (statement, alias) is one of EXCEPTIONS,
each of which says why and what removes it; an exception that no longer finds anything fails
too, so the list only shrinks. The self-tests show the checker refusing what it must refuse.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.single_shard import EXCEPTIONS, check, hot_statements, hot_tables

import jobq.storage.queries
from jobq.storage.queries import parse_queries, query

HOT = hot_statements()
TABLES = hot_tables()


@pytest.mark.parametrize("name", HOT)
def test_hot_statement_touches_one_shard(name: str) -> None:
    findings = [str(f) for f in check(query(name), TABLES) if (name, f.alias) not in EXCEPTIONS]
    assert not findings, f"{name} is not single-shard: {findings}"


@pytest.mark.parametrize(("name", "alias"), sorted(EXCEPTIONS))
def test_each_exception_is_still_needed(name: str, alias: str) -> None:
    """An exception names a hot statement and an entry the checker does flag."""
    assert name in HOT, f"{name} is not a hot statement"
    flagged = {f.alias for f in check(query(name), TABLES)}
    assert alias in flagged, f"{name}: {alias} is single-shard now; drop its exception"


def test_the_colocated_tables_include_every_table_with_a_shard_column() -> None:
    """The tables V25 gave a shard column (and V22's side tables) are the ones checked."""
    assert {
        "jobs",
        "job_events",
        "job_dependencies",
        "enqueued_jobs",
        "queue_starts",
        "event_outbox",
        "workers",
        "ready_jobs",
        "held_jobs",
        "waiting_jobs",
    } <= TABLES


# --- the checker refuses what it must --------------------------------------------------------


def _problems(sql: str) -> list[str]:
    return [str(f) for f in check(sql, TABLES)]


def test_a_filter_on_shard_by_parameter_or_constant_passes() -> None:
    assert _problems("SELECT job_id FROM jobs WHERE job_id = $1 AND shard = $2") == []
    assert _problems("SELECT j.job_id FROM jobs j WHERE j.shard = 0::smallint") == []


def test_the_claim_with_its_shard_filter_removed_is_refused() -> None:
    claim = query("jobs_claim")
    assert "j.shard = $5::smallint" in claim
    broken = claim.replace("AND j.shard = $5::smallint", "", 1)
    assert broken != claim
    assert any(p.startswith("j (jobs)") for p in _problems(broken)), _problems(broken)


def test_a_join_without_shard_is_refused() -> None:
    sql = (
        "SELECT j.job_id FROM held_jobs h JOIN jobs j ON j.job_id = h.job_id"
        " WHERE h.shard = $1 AND h.worker_id = $2"
    )
    assert _problems(sql) == ["j (jobs): not constrained by shard"]
    joined = sql.replace("ON j.job_id", "ON j.shard = h.shard AND j.job_id")
    assert _problems(joined) == []


def test_an_insert_without_shard_is_refused() -> None:
    sql = "INSERT INTO job_events (job_id, reason) SELECT $1, 'SUBMITTED'"
    assert _problems(sql) == ["job_events (job_events): INSERT without the shard column"]
    with_shard = "INSERT INTO job_events (job_id, reason, shard) SELECT $1, 'SUBMITTED', $2"
    assert _problems(with_shard) == []


def test_an_or_does_not_constrain() -> None:
    sql = "SELECT 1 FROM jobs WHERE shard = $1 OR job_id = $2"
    assert _problems(sql) == ["jobs (jobs): not constrained by shard"]


def test_two_shard_values_are_refused() -> None:
    sql = (
        "WITH a AS (DELETE FROM ready_jobs r WHERE r.shard = $1 RETURNING r.job_id)"
        " UPDATE jobs j SET status = 'ASSIGNED' FROM a WHERE j.job_id = a.job_id AND j.shard = $2"
    )
    assert _problems(sql) == ["- (-): names more than one shard: $1, $2"]


def test_entries_in_ctes_sub_selects_and_updates_are_all_checked() -> None:
    sql = (
        "WITH c AS (SELECT job_id FROM ready_jobs WHERE queue_name = $2)"
        " UPDATE jobs j SET status = 'ASSIGNED' FROM c WHERE j.job_id = c.job_id AND j.shard = $1"
        " AND NOT EXISTS (SELECT FROM enqueued_jobs e WHERE e.job_id = j.job_id)"
    )
    assert sorted(_problems(sql)) == [
        "e (enqueued_jobs): not constrained by shard",
        "ready_jobs (ready_jobs): not constrained by shard",
    ]
    correlated = sql.replace(
        "WHERE queue_name = $2", "WHERE queue_name = $2 AND shard = $1"
    ).replace("e.job_id = j.job_id", "e.job_id = j.job_id AND e.shard = j.shard")
    assert _problems(correlated) == []


def test_a_cte_named_like_nothing_hot_is_not_a_table() -> None:
    sql = "WITH old AS (SELECT 1 AS x) SELECT x FROM old"
    assert _problems(sql) == []


# --- every statement, hot or not, writes the shard of the rows it inserts --------------------

INSERTS_WITHOUT_SHARD: set[str] = set()
"""Statements allowed to insert into a colocated table without naming the shard: none (the
schedule tick's job, the last one, names the shard of its id since the ticks' table, V24)."""


def _named_queries() -> dict[str, str]:
    sql_dir = Path(jobq.storage.queries.__file__).with_name("sql")
    found: dict[str, str] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        found.update(parse_queries(path.read_text(encoding="utf-8")))
    return found


def test_every_insert_into_a_colocated_table_writes_its_shard() -> None:
    """Not only the hot statements: a row inserted without its shard would sit on shard 0
    whatever its job's shard. (Statements with `{placeholders}`, the history maintainer's DDL
    templates, are not SQL until formatted, and insert no job rows.)"""
    missing = sorted(
        name
        for name, sql in _named_queries().items()
        if "{" not in sql
        and name not in INSERTS_WITHOUT_SHARD
        and any("INSERT" in f.problem for f in check(sql, TABLES))
    )
    assert not missing, f"statements inserting rows without their shard: {missing}"
    for name in INSERTS_WITHOUT_SHARD:  # still needed, or the list shrinks
        assert any("INSERT" in f.problem for f in check(_named_queries()[name], TABLES)), name
