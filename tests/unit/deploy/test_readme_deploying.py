"""README "Deploying" says what the deploy kit really does: its ports are the settings'
defaults and make cluster's layout, its alerts are the rules' alerts, its variables are jobq
settings (or OpenTelemetry's), and every file it names exists.

An operator reads this section instead of the code; a port or an alert renamed in one place and
not in the other would send them to the wrong place at the worst time.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from jobq.config.loader import env_var_name, iter_fields
from jobq.config.settings import Settings

REPO = Path(__file__).resolve().parents[3]
README = REPO / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def deploying() -> str:
    return section("Deploying")


def table_rows(text: str, header_start: str) -> list[list[str]]:
    """The cells of the Markdown table whose header row starts with `header_start`."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(f"| {header_start}"))
    rows = []
    for line in lines[first + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def cluster_layout() -> ModuleType:
    """tools/cluster_layout.py, which make cluster's launcher imports as a script sibling."""
    path = REPO / "tools" / "cluster_layout.py"
    spec = importlib.util.spec_from_file_location("cluster_layout", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("cluster_layout", module)
    spec.loader.exec_module(module)
    return module


def default_of(dotted: str) -> Any:
    section_name, field = dotted.split(".")
    model = Settings.model_fields[section_name].annotation
    assert model is not None
    return model.model_fields[field].default


def test_every_jq_variable_named_is_a_real_setting() -> None:
    real = {env_var_name(section_name, field) for section_name, field, _ in iter_fields()}
    named = set(re.findall(r"\bJQ_[A-Z0-9_]+", deploying()))
    # `(or `_FILE`)` after a token variable names its file form.
    named = {name.rstrip("_") for name in named}
    unknown = sorted(name for name in named if name not in real and name != "JQ_HEALTHCHECK_URL")
    assert not unknown, f"README Deploying names settings jobq does not have: {unknown}"


def test_the_port_table_gives_the_settings_defaults() -> None:
    rows = table_rows(deploying(), "Port (default)")
    assert len(rows) == 6
    for port, setting, _program, _what in rows:
        default = default_of(setting.strip("`"))
        if port.startswith("off"):
            assert default == 0, f"{setting} is on by default ({default}), the README says off"
        else:
            assert int(port) == default, f"README says {setting} is {port}, it is {default}"


def test_the_cluster_port_table_is_make_clusters_layout() -> None:
    layout_module = cluster_layout()
    layout = layout_module.Layout(layout_module.DEFAULT_BASE_PORT)
    assert f"--base-port {layout_module.DEFAULT_BASE_PORT}" in deploying()
    rows = {row[1]: row[0] for row in table_rows(deploying(), "Port (default `--base-port")}
    services = [layout.postgres, layout.redis, layout.kafka, layout.prometheus]
    assert rows["PostgreSQL / Redis / Kafka / Prometheus"] == " / ".join(map(str, services))
    server_1, server_2 = layout.servers
    for server, label in (
        (server_1, "server-1 gRPC / dashboard and `/api/v1` / health / metrics"),
        (server_2, "server-2, the same"),
    ):
        ports = [server.grpc, server.dashboard, server.health, server.metrics]
        assert rows[label] == " / ".join(map(str, ports)), label
    worker_1, worker_2 = layout.workers
    assert rows["worker-1 and worker-2 health / metrics"] == (
        f"{worker_1.health} / {worker_1.metrics}, {worker_2.health} / {worker_2.metrics}"
    )


def test_the_alert_table_is_the_rules_alerts() -> None:
    rules_dir = REPO / "deploy" / "prometheus" / "rules"
    alerts: dict[str, dict[str, Any]] = {
        rule["alert"]: rule
        for path in sorted(rules_dir.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    rows = {row[0].strip("`"): row for row in table_rows(deploying(), "Alert |")}
    assert set(rows) == set(alerts), (
        f"README lists {sorted(set(rows) - set(alerts))} not in the rules and misses "
        f"{sorted(set(alerts) - set(rows))}"
    )
    for name, (_alert, _when, for_, severity) in rows.items():
        rule = alerts[name]
        assert severity == rule["labels"]["severity"], name
        assert for_ == rule.get("for", "-"), f"{name}: README for {for_}, rule {rule.get('for')}"


def test_every_repository_path_named_exists() -> None:
    paths = set(re.findall(r"`((?:deploy|tools)/[\w./*-]+)`", deploying()))
    assert "deploy/compose.yaml" in paths
    missing = sorted(p for p in paths if not list(REPO.glob(p.rstrip("/"))))
    assert not missing, f"README Deploying names files that do not exist: {missing}"
