"""Reading PostgreSQL's EXPLAIN (FORMAT JSON) plans in the plan tests: the scan nodes a test
cares about, and how many rows each read. Each test says which scans it cares about (which
tables, whether a partition pruned at run time counts); the walk and the arithmetic are here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Plan = dict[str, Any]


def scans(plan: Any, wanted: Callable[[Plan], bool]) -> list[Plan]:
    """Every scan node of `plan` (a node, a list of nodes, or an EXPLAIN result's "Plan") for
    which `wanted` holds, in plan order. Bitmap Index Scans name no relation, so a `wanted`
    that looks at "Relation Name" leaves them out: the Bitmap Heap Scan above counts the rows."""
    found: list[Plan] = []
    if isinstance(plan, dict):
        if "Scan" in plan.get("Node Type", "") and wanted(plan):
            found.append(plan)
        for value in plan.values():
            found += scans(value, wanted)
    elif isinstance(plan, list):
        for value in plan:
            found += scans(value, wanted)
    return found


def relation(scan: Plan) -> str:
    """The table a scan node reads ("" for a node that names none)."""
    return str(scan.get("Relation Name", ""))


def rows_read(scan: Plan) -> float:
    """The rows a scan read: those it returned and those it threw away (by its filter or by a
    lossy bitmap's recheck), over all its loops. EXPLAIN gives each count per loop (averaged),
    so multiply by the loops."""
    per_loop = (
        scan["Actual Rows"]
        + scan.get("Rows Removed by Filter", 0)
        + scan.get("Rows Removed by Index Recheck", 0)
    )
    return float(per_loop * scan["Actual Loops"])
