"""deploy/grafana/dashboards/jobq.json: the dashboard's structure, checked without Grafana.

Grafana loads a provisioned dashboard it cannot make sense of without a word (a panel on top
of another, a missing datasource, a duplicate id), so the model is checked here: the modern
panel types, unique ids, a layout without overlaps, every query on the provisioned Prometheus
datasource, `$queue` on exactly the queries of queue-labelled metrics, rate windows from
`$__rate_interval`, every metric one that jq-server or jq-worker exposes (metrics.py), and
every query parsed by promtool. Whether the queries return data is the end-to-end test's job
(tests/e2e/test_grafana_dashboard.py, a real Prometheus scraping real programs).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families
from support.grafana_dashboard import (
    ALL_QUEUES,
    DATASOURCE_UID,
    as_prometheus_query,
    data_panels,
    label_values_query,
    load_dashboard,
    panel_queries,
    variable,
)

from jobq.observability.metrics import ProgramMetrics, ServerMetrics, WorkerMetrics
from jobq.server.history_metrics import HistoryMetrics

GRID_WIDTH = 24
PANEL_TYPES = {"timeseries", "stat", "gauge", "bargauge", "table", "heatmap"}
"""Today's panel types: the legacy `graph` and `singlestat` are migrated or dropped by Grafana."""
DATASOURCE_REFS = {"${datasource}", "$datasource", DATASOURCE_UID}
METRIC = re.compile(r"\b((?:jq|process)_[a-z0-9_]+)\b(\{[^}]*\})?")
REQUIRED = (
    # What issue 20 asks the dashboard to show, by the metric each view needs.
    "jq_jobs_submitted_total",
    "jq_jobs_completed_total",
    "jq_job_wait_seconds_bucket",
    "jq_job_duration_seconds_bucket",
    "jq_job_queue_depth",
    "jq_job_retries_total",
    "jq_jobs_dead_lettered_total",
    "jq_worker_active_jobs",
    "jq_worker_slots",
    "jq_workers",
    "jq_db_errors_total",
    "jq_grpc_requests_total",
    "jq_grpc_request_duration_seconds_bucket",
    "jq_scheduler_cycle_duration_seconds_bucket",
    "jq_events_outbox_lag_events",
)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def _wrappers(program: ProgramMetrics) -> Iterator[Counter | Gauge | Histogram]:
    for value in vars(program).values():
        if isinstance(value, Counter | Gauge | Histogram):
            yield value


def _exposed() -> dict[str, tuple[str, ...]]:
    """Every series name jq-server and jq-worker expose, with its label names. Labelled
    metrics have no samples until first used, so their names come from the declarations."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    exposed: dict[str, tuple[str, ...]] = {}
    server = ServerMetrics()
    HistoryMetrics(server.registry)  # jq-server registers them beside its own (app.py)
    for program in (server, WorkerMetrics()):
        for metric in _wrappers(program):
            for suffix in suffixes[metric._type]:
                exposed[metric._name + suffix] = tuple(metric._labelnames)
        body, _ = program.render()
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                exposed.setdefault(sample.name, tuple(sample.labels))
    return exposed


def _rectangles(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, int]]]:
    return [(panel["title"], panel["gridPos"]) for panel in dashboard["panels"]] + [
        (panel["title"], panel["gridPos"])
        for row in dashboard["panels"]
        if row["type"] == "row"
        for panel in row.get("panels", [])
    ]


def test_modern_model_with_an_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"]
    assert dashboard["title"]
    assert dashboard.get("id") is None  # provisioning assigns the database id


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]] + [
        child["id"] for row in dashboard["panels"] for child in row.get("panels", [])
    ]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids))


def test_panels_tile_the_grid_without_overlaps(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for title, grid in _rectangles(dashboard):
        assert grid["w"] > 0
        assert grid["h"] > 0
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= GRID_WIDTH, title
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{title!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = title


def test_every_panel_queries_the_provisioned_prometheus(dashboard: dict[str, Any]) -> None:
    panels = data_panels(dashboard)
    assert panels
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel["title"]
        assert panel["datasource"]["type"] == "prometheus", panel["title"]
        assert panel["datasource"]["uid"] in DATASOURCE_REFS, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == panel["datasource"], panel["title"]


def test_the_datasource_variable_defaults_to_the_provisioned_uid(
    dashboard: dict[str, Any],
) -> None:
    datasource = variable(dashboard, "datasource")
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    assert datasource["current"]["value"] == DATASOURCE_UID


def test_the_queue_variable_lists_queues_and_allows_all(dashboard: dict[str, Any]) -> None:
    queue = variable(dashboard, "queue")
    assert queue["type"] == "query"
    assert queue["multi"] is True
    assert queue["includeAll"] is True
    # Without an allValue, "All" becomes the list of queues known when the variable was last
    # refreshed, and a queue created since would be missing from every panel.
    assert queue["allValue"] == ALL_QUEUES
    assert queue["datasource"]["uid"] in DATASOURCE_REFS
    metric, label = label_values_query(queue["definition"])
    assert label == "queue"
    assert "queue" in _exposed()[metric]


def test_metrics_exist_and_queue_labelled_ones_follow_the_queue_variable(
    dashboard: dict[str, Any],
) -> None:
    exposed = _exposed()
    for query in panel_queries(dashboard):
        found = METRIC.findall(query.expr)
        assert found, f"{query}: no jobq or process metric"
        for name, selector in found:
            assert name in exposed, f"{query}: {name} is not exposed by jq-server or jq-worker"
            if "queue" in exposed[name]:
                assert 'queue=~"$queue"' in selector, f"{query}: {name} ignores $queue"
            else:
                assert "queue" not in selector, f"{query}: {name} has no queue label"


def test_the_issue_views_are_all_there(dashboard: dict[str, Any]) -> None:
    used = {name for q in panel_queries(dashboard) for name, _ in METRIC.findall(q.expr)}
    assert set(REQUIRED) <= used, set(REQUIRED) - used
    exprs = [q.expr for q in panel_queries(dashboard)]
    assert any('jq_grpc_requests_total{code!="OK"}' in expr for expr in exprs)


def test_windows_and_quantiles_are_grafana_s(dashboard: dict[str, Any]) -> None:
    """Rate windows follow the scrape interval Grafana knows ($__rate_interval), never a fixed
    `[5m]`; quantiles keep `le`, without which histogram_quantile returns nothing."""
    for query in panel_queries(dashboard):
        for window in re.findall(r"\[([^\]]+)\]", query.expr):
            assert window in ("$__rate_interval", "$__range"), f"{query}: window [{window}]"
        for grouping in re.findall(r"histogram_quantile\([^,]+,\s*sum by \(([^)]*)\)", query.expr):
            assert "le" in [label.strip() for label in grouping.split(",")], str(query)
        if "histogram_quantile" in query.expr:
            assert "_bucket" in query.expr, str(query)


def test_promtool_parses_every_query(dashboard: dict[str, Any], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH (install the Debian package prometheus)")
    queries = panel_queries(dashboard)
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"dashboard:panel{q.panel_id}:{q.ref_id.lower()}",
                        "expr": as_prometheus_query(
                            q.expr, rate_interval="1m", interval="15s", time_range="1h"
                        ),
                    }
                    for q in queries
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(queries)} rules found" in checked.stdout
