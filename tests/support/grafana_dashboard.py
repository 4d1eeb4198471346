"""The Grafana dashboard of deploy/grafana/dashboards: its panels' queries, and those queries
with Grafana's variables replaced so Prometheus itself can run them.

Grafana rewrites a query before sending it: `$__rate_interval`, `$__interval` and `$__range`
become durations, a multi-value variable with "All" selected becomes its `allValue`. A test that
runs the dashboard's queries against a real Prometheus has to make the same substitutions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "jobq.json"
DATASOURCE_UID = "prometheus"
"""The uid of the Prometheus datasource that deploy/grafana's provisioning defines."""
ALL_QUEUES = ".*"
"""What `$queue` becomes with "All" selected: the variable's allValue."""


@dataclass(frozen=True)
class PanelQuery:
    """One query (target) of one panel."""

    panel_id: int
    panel_title: str
    ref_id: str
    expr: str

    def __str__(self) -> str:
        return f"panel {self.panel_id} {self.panel_title!r} target {self.ref_id}: {self.expr}"


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def data_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data: rows are layout, not panels (their own `panels` list holds
    their children only while collapsed, so those are included too)."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            panels.extend(panel.get("panels", []))
        else:
            panels.append(panel)
    return panels


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    return [
        PanelQuery(panel["id"], panel["title"], target["refId"], target["expr"])
        for panel in data_panels(dashboard)
        for target in panel["targets"]
    ]


def variable(dashboard: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [v for v in dashboard["templating"]["list"] if v["name"] == name]
    assert len(found) == 1, f"{len(found)} variables named {name!r}"
    return found[0]


def label_values_query(definition: str) -> tuple[str, str]:
    """(metric, label) of a Grafana `label_values(metric, label)` variable query."""
    match = re.fullmatch(r"label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)", definition.strip())
    if match is None:
        raise ValueError(f"not a label_values(metric, label) query: {definition!r}")
    return match[1], match[2]


def as_prometheus_query(
    expr: str, *, rate_interval: str, interval: str, time_range: str, queue: str = ALL_QUEUES
) -> str:
    """`expr` as Grafana sends it to Prometheus, with these variable values. Longer names first:
    `$__rate_interval` must not be read as `$__r...` of another variable."""
    replacements = {
        "${__rate_interval}": rate_interval,
        "$__rate_interval": rate_interval,
        "${__interval}": interval,
        "$__interval": interval,
        "${__range}": time_range,
        "$__range": time_range,
        "${queue}": queue,
        "$queue": queue,
    }
    for name, value in replacements.items():
        expr = expr.replace(name, value)
    leftover = re.search(r"\$\{?\w+", expr)
    if leftover:
        raise ValueError(f"unknown Grafana variable {leftover[0]!r} in {expr!r}")
    return expr
