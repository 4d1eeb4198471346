"""Named SQL queries, loaded once from the `.sql` files next to this module.

Each query starts with `-- name: <name>` and a one-line comment saying what it does, as
procrastinate does; the rest of the block up to the next `-- name:` is the statement.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import resources

_NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a `.sql` file's text into {name: statement}; names must be unique."""
    queries: dict[str, str] = {}
    matches = list(_NAME_LINE.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        statement = "\n".join(
            line for line in body.splitlines() if not line.lstrip().startswith("--")
        ).strip()
        name = match.group(1)
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        if not statement:
            raise ValueError(f"query {name!r} has no statement")
        queries[name] = statement.rstrip(";")
    return queries


@cache
def load_queries() -> Mapping[str, str]:
    """Every named query of the package's `sql/*.sql` files."""
    merged: dict[str, str] = {}
    for entry in sorted(resources.files("jobq.storage").joinpath("sql").iterdir(), key=str):
        if not entry.name.endswith(".sql"):
            continue
        for name, statement in parse_queries(entry.read_text(encoding="utf-8")).items():
            if name in merged:
                raise ValueError(f"query {name!r} is defined in more than one file")
            merged[name] = statement
    return merged


def query(name: str) -> str:
    """The statement of one named query; KeyError names an unknown one."""
    return load_queries()[name]
