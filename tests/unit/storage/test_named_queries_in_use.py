"""SQL lives in `storage/sql/*.sql` as named queries: every one of them is used, and no Python
module of jobq hands asyncpg a statement written in place.

Read from the syntax tree, not the text, so formatting cannot hide or fake a finding: a call of
fetch, fetchrow, fetchval, execute or executemany whose statement is a string literal (or an
f-string) is SQL in Python. Statements built from a name (`query("job_get")`) or by a function
(`settings_statement(...)`) pass.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import jobq
from jobq.storage.queries import load_queries

SOURCE = Path(jobq.__file__).parent
EXECUTING = {"fetch", "fetchrow", "fetchval", "execute", "executemany"}
IN_PLACE_ALLOWED = {
    # The migration runner bootstraps the schema the named queries run against: its own
    # history table, advisory lock and search_path, some of them built around a quoted name.
    "storage/migrations.py",
    # CREATE DATABASE takes the name as an identifier, which no bound parameter can supply.
    "storage/database.py",
}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE).as_posix()
        if relative.startswith("rpc/_gen/"):
            continue
        yield relative, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _in_place_statements(module: ast.Module) -> Iterator[int]:
    for node in ast.walk(module):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in EXECUTING
            and node.args
            and isinstance(node.args[0], ast.Constant | ast.JoinedStr)
        ):
            yield node.lineno


def test_no_module_executes_sql_written_in_place() -> None:
    found = [
        f"{relative}:{line}"
        for relative, module in _modules()
        if relative not in IN_PLACE_ALLOWED
        for line in _in_place_statements(module)
    ]
    assert found == [], "move these statements into storage/sql/*.sql as named queries"
    allowed_but_clean = [
        relative
        for relative, module in _modules()
        if relative in IN_PLACE_ALLOWED and not list(_in_place_statements(module))
    ]
    assert allowed_but_clean == [], "no longer an exception: take it off IN_PLACE_ALLOWED"


def test_every_named_query_is_used() -> None:
    literals = {
        node.value
        for _, module in _modules()
        for node in ast.walk(module)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    assert sorted(set(load_queries()) - literals) == []


def test_the_check_sees_a_statement_written_in_place() -> None:
    module = ast.parse('async def f(pool):\n    await pool.fetchval(f"SELECT {1}")\n')
    assert list(_in_place_statements(module)) == [2]
