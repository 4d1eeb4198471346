"""A static check that an SQL statement touches one shard (issue 21, must-show 4).

The statement is parsed by PostgreSQL's own parser (libpg_query, through pglast), and every
query level of it (the statement, each CTE, each sub-select, each branch of a UNION) is looked
at with the rules a distributed planner (Citus's router planner) needs to send it whole to one
node:

1. Every range table entry naming a hot table (in FROM, JOIN, USING, the target of an UPDATE or
   DELETE; in any CTE or sub-select) is *constrained*: its `shard` column is equated, in the
   conjuncts of its level's WHERE or JOIN ... ON, with a parameter or a constant, or with the
   `shard` of another constrained entry (of its level or of an enclosing one: a correlated
   sub-select). An equality under OR or NOT does not constrain.
2. Every INSERT into a hot table names `shard` among its columns.
3. The statement names one shard value: all the parameters and constants that rule 1 finds
   equated with a shard, and those written into `shard` by an INSERT, are the same one.

CTE names shadow tables (a CTE is not a hot table, whatever it reads). Each finding names the
entry by its alias, so that a deliberate exception can be listed by (statement, alias).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pglast import ast, parse_sql
from pglast.enums import BoolExprType

DOC = Path(__file__).resolve().parents[2] / "docs" / "scaling.md"
HOT_SECTION = "### Hot statements"
COLOCATED = "**Distributed, colocated by `shard`:**"
ROW = re.compile(r"^\|\s*`([a-z_][a-z0-9_]*)`\s*\|")

EXCEPTIONS: dict[tuple[str, str], str] = {
    # The claim's fence: the worker's row FOR KEY SHARE, on the worker's home shard, not on the
    # shard claimed from. Removed by the per-shard fence table worker_shards (docs/scaling.md,
    # section 3 "Where the workers live", F7).
    ("jobs_claim", "w"): "workers row on its home shard (F7: worker_shards)",
    ("jobs_claim_chosen", "w"): "workers row on its home shard (F7: worker_shards)",
    ("job_insert_assigned", "w"): "workers row on its home shard (F7: worker_shards)",
    ("jobs_held_by_offline_workers", "w"): "workers read by id (F7: worker_shards)",
    ("jobs_held_by_offline_workers", "hw"): "workers read by id (F7: worker_shards)",
    # Dependencies: a dependant's prerequisites may be jobs of other shards. Their statuses are
    # read (dependants_resolve) and their has_dependants set (job_insert_dependent) where they
    # are: a multi-shard statement, two-phase commit on Citus (docs/scaling.md, the rows of
    # both).
    ("dependants_resolve", "p"): "prerequisites on their own shards",
    ("job_insert_dependent", "p"): "prerequisites on their own shards",
}
"""The (statement, alias) pairs that reach another shard on purpose, each with why."""

Value = tuple[str, object]
"""A shard value: ("param", number) or ("const", value)."""


@dataclass(frozen=True)
class Finding:
    alias: str
    table: str
    problem: str

    def __str__(self) -> str:
        return f"{self.alias} ({self.table}): {self.problem}"


@dataclass
class _Level:
    """One query level: its hot entries (alias -> table) and which of them are constrained."""

    entries: dict[str, str]
    constrained: set[str] = field(default_factory=set)


def check(sql: str, hot_tables: set[str]) -> list[Finding]:
    """What keeps `sql` from being single-shard; empty when it is."""
    [raw] = parse_sql(sql)
    assert raw.stmt is not None
    checker = _Checker(hot_tables, _cte_names(raw.stmt))
    checker.visit(raw.stmt, [])
    findings = list(checker.findings)
    if len(checker.values) > 1:
        names = ", ".join(_spell(v) for v in sorted(checker.values, key=str))
        findings.append(Finding("-", "-", f"names more than one shard: {names}"))
    return findings


def shard_parameters(sql: str, hot_tables: set[str]) -> set[int]:
    """The numbers of the parameters `sql` equates with a shard or writes into one."""
    [raw] = parse_sql(sql)
    assert raw.stmt is not None
    checker = _Checker(hot_tables, _cte_names(raw.stmt))
    checker.visit(raw.stmt, [])
    return {int(str(v)) for kind, v in checker.values if kind == "param"}


def _spell(value: Value) -> str:
    kind, v = value
    return f"${v}" if kind == "param" else repr(v)


def _cte_names(node: ast.Node) -> set[str]:
    return {str(n.ctename) for n in _walk(node) if isinstance(n, ast.CommonTableExpr)}


def _slots(node: ast.Node) -> Iterator[str]:
    """The attribute names of a parse node."""
    yield from getattr(type(node), "__slots__", ())


def _walk(node: object) -> Iterator[ast.Node]:
    if isinstance(node, ast.Node):
        yield node
        for name in _slots(node):
            yield from _walk(getattr(node, name))
    elif isinstance(node, (tuple, list)):
        for item in node:
            yield from _walk(item)


def _conjuncts(expr: object) -> Iterator[ast.Node]:
    """The top-level AND terms of a qualification (an OR or NOT is one opaque term)."""
    if isinstance(expr, ast.BoolExpr) and expr.boolop == BoolExprType.AND_EXPR:
        for arg in expr.args or ():
            yield from _conjuncts(arg)
    elif isinstance(expr, ast.Node):
        yield expr


def _shard_value(expr: object) -> Value | None:
    """A parameter or constant, possibly cast (`$5::smallint`, `0`)."""
    while isinstance(expr, ast.TypeCast):
        expr = expr.arg
    if isinstance(expr, ast.ParamRef):
        return ("param", expr.number)
    if isinstance(expr, ast.A_Const) and not expr.isnull:
        return ("const", getattr(expr.val, "ival", getattr(expr.val, "sval", None)))
    return None


def _shard_column(expr: object) -> str | None:
    """The qualifier of a `x.shard` reference ('' for a bare `shard`), else None."""
    if not isinstance(expr, ast.ColumnRef):
        return None
    names = [getattr(f, "sval", None) for f in expr.fields or ()]
    if names and names[-1] == "shard":
        return names[-2] if len(names) >= 2 else ""
    return None


class _Checker:
    def __init__(self, hot_tables: set[str], ctes: set[str]) -> None:
        self.hot = hot_tables
        self.ctes = ctes
        self.findings: list[Finding] = []
        self.values: set[Value] = set()

    # --- traversal ----------------------------------------------------------------------------

    def visit(self, node: object, scopes: list[_Level]) -> None:
        """Check every query level under `node`; `scopes` are the enclosing levels."""
        if isinstance(node, (ast.SelectStmt, ast.UpdateStmt, ast.DeleteStmt, ast.InsertStmt)):
            self._statement(node, scopes)
        elif isinstance(node, ast.Node):
            for name in _slots(node):
                self.visit(getattr(node, name), scopes)
        elif isinstance(node, (tuple, list)):
            for item in node:
                self.visit(item, scopes)

    def _statement(self, stmt: ast.Node, scopes: list[_Level]) -> None:
        # CTEs see no entry of the statement they belong to
        with_clause = getattr(stmt, "withClause", None)
        if with_clause is not None:
            self.visit(with_clause, scopes)
        entries: dict[str, str] = {}
        quals: list[object] = []
        sources: list[object] = []  # FROM/USING items, whose sub-nodes are visited below
        if isinstance(stmt, ast.SelectStmt):
            sources = list(stmt.fromClause or ())
            quals.append(stmt.whereClause)
        elif isinstance(stmt, ast.UpdateStmt) and stmt.relation is not None:
            self._entry(stmt.relation, entries)
            sources = list(stmt.fromClause or ())
            quals.append(stmt.whereClause)
        elif isinstance(stmt, ast.DeleteStmt) and stmt.relation is not None:
            self._entry(stmt.relation, entries)
            sources = list(stmt.usingClause or ())
            quals.append(stmt.whereClause)
        elif isinstance(stmt, ast.InsertStmt):
            self._insert(stmt)
        for source in sources:
            self._collect(source, entries, quals)
        level = _Level(entries)
        self._constrain(level, quals, scopes)
        for alias in sorted(set(entries) - level.constrained):
            self.findings.append(Finding(alias, entries[alias], "not constrained by shard"))
        inner = [*scopes, level]
        for name in _slots(stmt):
            if name in ("withClause", "relation"):
                continue
            self.visit(getattr(stmt, name), inner)

    def _entry(self, rv: ast.RangeVar, entries: dict[str, str]) -> None:
        table = str(rv.relname)
        if table in self.hot and table not in self.ctes:
            alias = str(rv.alias.aliasname) if rv.alias is not None else table
            entries[alias] = table

    def _collect(self, source: object, entries: dict[str, str], quals: list[object]) -> None:
        """The hot entries of a FROM item, and the ON conditions of its joins."""
        if isinstance(source, ast.RangeVar):
            self._entry(source, entries)
        elif isinstance(source, ast.JoinExpr):
            self._collect(source.larg, entries, quals)
            self._collect(source.rarg, entries, quals)
            quals.append(source.quals)

    # --- rule 1 --------------------------------------------------------------------------------

    def _constrain(self, level: _Level, quals: list[object], scopes: list[_Level]) -> None:
        joins: list[tuple[str, str]] = []
        for qual in quals:
            for term in _conjuncts(qual):
                if not (isinstance(term, ast.A_Expr) and _is_equality(term)):
                    continue
                left, right = term.lexpr, term.rexpr
                for column, other in ((left, right), (right, left)):
                    alias = self._alias(_shard_column(column), level)
                    if alias is None:
                        continue
                    value = _shard_value(other)
                    if value is not None:
                        level.constrained.add(alias)
                        self.values.add(value)
                    partner = _shard_column(other)
                    if partner is not None:
                        joins.append((alias, partner))
        # join equalities: to an entry constrained already, here or in an enclosing level
        changed = True
        while changed:
            changed = False
            for alias, partner in joins:
                if alias in level.constrained:
                    continue
                if partner in level.constrained or any(
                    partner in outer.constrained for outer in scopes
                ):
                    level.constrained.add(alias)
                    changed = True

    def _alias(self, qualifier: str | None, level: _Level) -> str | None:
        """The entry of this level a `shard` reference names, if it names one."""
        if qualifier is None:
            return None
        if qualifier == "":  # a bare `shard`: only unambiguous with one entry
            return next(iter(level.entries)) if len(level.entries) == 1 else None
        return qualifier if qualifier in level.entries else None

    # --- rules 2 and 3 -------------------------------------------------------------------------

    def _insert(self, stmt: ast.InsertStmt) -> None:
        relation = stmt.relation
        table = str(relation.relname) if relation is not None else ""
        if relation is None or table not in self.hot or table in self.ctes:
            return
        columns = [c.name for c in stmt.cols or ()]
        alias = str(relation.alias.aliasname) if relation.alias is not None else table
        if "shard" not in columns:
            self.findings.append(Finding(alias, table, "INSERT without the shard column"))
            return
        index = columns.index("shard")
        for row in _rows(stmt.selectStmt):
            if index < len(row):
                value = _shard_value(row[index])
                if value is not None:
                    self.values.add(value)


def _is_equality(expr: ast.A_Expr) -> bool:
    return [getattr(n, "sval", None) for n in expr.name or ()] == ["="] and (
        getattr(expr.kind, "name", None) == "AEXPR_OP"
    )


def _rows(select: object) -> Iterator[list[object]]:
    """The value expressions of each row an INSERT's source produces (each UNION branch's
    target list, each VALUES row)."""
    if not isinstance(select, ast.SelectStmt):
        return
    if select.larg is not None or select.rarg is not None:
        yield from _rows(select.larg)
        yield from _rows(select.rarg)
    elif select.valuesLists:
        for values in select.valuesLists:
            yield list(values)
    else:
        yield [target.val for target in select.targetList or ()]


# --- what to check, from docs/scaling.md ---------------------------------------------------------


def _section(text: str, head: str) -> str:
    assert head in text, f"{DOC.name} has no {head!r}"
    return text.split(head, 1)[1]


def hot_statements() -> list[str]:
    """The names in the "Hot statements" table, in its order."""
    section = _section(DOC.read_text(encoding="utf-8"), HOT_SECTION).split("\n### ", 1)[0]
    names = [m[1] for line in section.splitlines() if (m := ROW.match(line))]
    assert len(names) >= 20, f"only {len(names)} rows read from {HOT_SECTION!r}"
    return names


def hot_tables() -> set[str]:
    """The tables distributed and colocated by shard, as section 4 lists them."""
    paragraph = _section(DOC.read_text(encoding="utf-8"), COLOCATED).split("\n\n", 1)[0]
    names = set(re.findall(r"`([a-z_]+)`", paragraph.split(". ", 1)[0])) - {"shard"}
    assert {"jobs", "job_events", "ready_jobs"} <= names, names
    return names
