"""docs/scaling.md classifies every named query for Citus (issue 21, must-show 4): the table
must name each `-- name:` of `storage/sql/*.sql` exactly once, with the file it lives in and one
of the allowed classes, and no query that no longer exists. A query added, renamed, moved or
deleted without its row fails here, so the document cannot drift from the statements."""

from __future__ import annotations

import re
from pathlib import Path

import jobq.storage.queries
from jobq.storage.queries import parse_queries

SQL_DIR = Path(jobq.storage.queries.__file__).with_name("sql")
DOC = Path(__file__).resolve().parents[3] / "docs" / "scaling.md"
SECTION = "## 5. Every named query, classified for Citus"
CLASSES = {"router", "fan-out", "refused", "local"}
# A row of the classification: | `name` | file.sql | class | why | fix |
ROW = re.compile(r"^\|\s*`([a-z_][a-z0-9_]*)`\s*\|\s*([\w.]+)\s*\|\s*([a-z-]+)\s*\|(.*)\|\s*$")


def _queries() -> dict[str, str]:
    """{query name: file name} from the SQL files themselves."""
    found: dict[str, str] = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        for name in parse_queries(path.read_text(encoding="utf-8")):
            found[name] = path.name
    return found


def _rows() -> list[tuple[str, str, str, str]]:
    """(name, file, class, rest of the row) for each row of the classification section."""
    text = DOC.read_text(encoding="utf-8")
    assert SECTION in text, f"{DOC.name} has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            rows.append((match[1], match[2], match[3], match[4]))
    return rows


def test_every_named_query_has_exactly_one_row() -> None:
    queries = _queries()
    rows = _rows()
    names = [name for name, _, _, _ in rows]
    missing = sorted(set(queries) - set(names))
    unknown = sorted(set(names) - set(queries))
    repeated = sorted({name for name in names if names.count(name) > 1})
    assert not missing, f"named queries without a row in {DOC.name}: {missing}"
    assert not unknown, f"rows in {DOC.name} for queries that do not exist: {unknown}"
    assert not repeated, f"queries with more than one row in {DOC.name}: {repeated}"


def test_each_row_names_its_file_and_an_allowed_class() -> None:
    queries = _queries()
    wrong_file = []
    wrong_class = []
    for name, file, cls, _ in _rows():
        if name in queries and queries[name] != file:
            wrong_file.append((name, file, queries[name]))
        if cls not in CLASSES:
            wrong_class.append((name, cls))
    assert not wrong_file, f"rows naming the wrong file (row, actual): {wrong_file}"
    assert not wrong_class, f"classes outside {sorted(CLASSES)}: {wrong_class}"


def test_fan_out_and_refused_rows_give_a_reason_and_a_fix() -> None:
    """A refused or fan-out statement says which rule and what to do about it."""
    unexplained = []
    for name, _, cls, rest in _rows():
        reason, fix = (cell.strip() for cell in rest.split("|", 1))
        if cls == "refused" and (not reason or not fix or fix == "—"):
            unexplained.append(name)
        if cls == "fan-out" and not reason:
            unexplained.append(name)
    assert not unexplained, f"rows without a reason or a fix: {unexplained}"
