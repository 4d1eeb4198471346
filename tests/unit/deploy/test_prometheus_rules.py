"""deploy/prometheus: the alert and recording rules are valid, unit-tested by promtool, and speak
of metrics jobq really exposes.

- `promtool check rules` accepts every rules file and `promtool test rules` passes every test
  file (the distribution's Prometheus, installed by .ci/run: a missing promtool fails here, it
  is not a skip);
- every alert has a promtool test in which it fires and one in which it stays silent, and
  every recording rule is evaluated by some test;
- every alert carries a severity and the summary, description and runbook annotations;
- every metric name in an expression is one jq-server or jq-worker exposes (read from their
  metric registries), a series recorded by the rules, or `up`: a renamed metric cannot leave
  an alert silently watching nothing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobq.observability.metrics import ProgramMetrics, ServerMetrics, WorkerMetrics
from jobq.server.history_metrics import HistoryMetrics

PROMETHEUS_DIR = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
SEVERITIES = {"critical", "warning"}
ANNOTATIONS = {"summary", "description", "runbook"}
INSTALL_HINT = "apt-get install prometheus (.ci/run installs it; promtool comes with it)"
PROMETHEUS_SERIES = {"up"}
"""Series Prometheus itself writes for every target."""

# PromQL words that look like metric names: keywords and the modifiers of aggregations and
# vector matching. Functions and aggregations are recognised by the "(" that follows them.
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset"}
PROMQL_WORDS |= {"group_left", "group_right", "inf", "nan"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(f"promtool is not installed: {INSTALL_HINT}")
    return found


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def rules() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for g in load(path)["groups"] for rule in g["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def unit_tests() -> list[dict[str, Any]]:
    return [test for path in TEST_FILES for test in load(path)["tests"]]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: what is left once strings, label matchers,
    grouping lists, ranges and durations, numbers, functions and keywords are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', " ", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+\S+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call is None and word.lower() not in PROMQL_WORDS:
            names.add(word)
    return names


def exposed(metrics: ProgramMetrics) -> set[str]:
    """The series names a program's registry exposes (counters with `_total`, histograms'
    `_bucket`, `_sum` and `_count`)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    return {
        family.name + suffix
        for family in metrics.registry.collect()
        for suffix in suffixes.get(family.type, [""])
    }


def test_promtool_checks_the_rules_files() -> None:
    assert {path.name for path in RULE_FILES} >= {"jobq-alerts.yml", "jobq-recording.yml"}
    result = subprocess.run(
        [promtool(), "check", "rules", *map(str, RULE_FILES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    assert TEST_FILES, "no promtool test files in deploy/prometheus/tests"
    result = subprocess.run(
        [promtool(), "test", "rules", *map(str, TEST_FILES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES), result.stdout


def test_every_alert_is_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for test in unit_tests():
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {rule["alert"] for rule in alerts()}

    assert len(names) == len(alerts()), "two alerts share a name"
    assert names - firing == set(), "alerts no test makes fire"
    assert names - silent == set(), "alerts no test shows silent"
    assert (firing | silent) - names == set(), "tests of alerts that do not exist"


def test_every_recording_rule_is_evaluated_by_a_test() -> None:
    tested = {
        name
        for test in unit_tests()
        for case in test.get("promql_expr_test", [])
        for name in metric_names(case["expr"])
    }
    recorded = {rule["record"] for rule in rules() if "record" in rule}

    assert recorded, "no recording rules"
    assert recorded - tested == set()


def test_every_alert_has_a_severity_and_the_annotations_an_operator_needs() -> None:
    for rule in alerts():
        assert rule.get("labels", {}).get("severity") in SEVERITIES, rule["alert"]
        assert set(rule.get("annotations", {})) >= ANNOTATIONS, rule["alert"]


def test_expressions_read_only_metrics_that_jobq_exposes() -> None:
    server = ServerMetrics(process_collectors=False)
    HistoryMetrics(server.registry)  # jq-server registers them beside its own (app.py)
    known = exposed(server)
    known |= exposed(WorkerMetrics(process_collectors=False))
    known |= PROMETHEUS_SERIES | {rule["record"] for rule in rules() if "record" in rule}

    used = {rule.get("alert") or rule["record"]: metric_names(rule["expr"]) for rule in rules()}

    unknown = {rule: names - known for rule, names in used.items() if names - known}
    assert unknown == {}
    assert set().union(*used.values()) >= {"jq_queue_oldest_pending_age_seconds", "up"}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (queue) (rate(jq_jobs_dead_lettered_total{reason!="CANCELLED"}[5m])) > 0.05',
            {"jq_jobs_dead_lettered_total"},
        ),
        (
            "max by (queue) (jq_queue_workers_online) == 0\nand\n"
            "max by (queue) (jq_queue_oldest_pending_age_seconds) > 0",
            {"jq_queue_workers_online", "jq_queue_oldest_pending_age_seconds"},
        ),
        (
            "histogram_quantile(0.95, sum by (queue, le) (rate(jq_job_wait_seconds_bucket[5m])))",
            {"jq_job_wait_seconds_bucket"},
        ),
        ('up{job="jq-server"} == 0', {"up"}),
        ("round(jobq:db_errors:rate5m, 0.001) offset 5m", {"jobq:db_errors:rate5m"}),
        ("a / on (queue) group_left (x) b_total", {"a", "b_total"}),
    ],
)
def test_metric_names_are_read_from_expressions(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_up_alerts_name_the_scrape_jobs_of_the_deploy_kit() -> None:
    """An `up{job="..."}` alert watching a job name no scrape configuration uses would never
    fire: the names must be those of deploy/prometheus/prometheus.yml (Compose)."""
    scrape_jobs = {
        job["job_name"] for job in load(PROMETHEUS_DIR / "prometheus.yml")["scrape_configs"]
    }
    watched = {
        name
        for rule in alerts()
        for name in re.findall(r'\bup\{[^}]*\bjob="([^"]+)"', rule["expr"])
    }
    assert watched == {"jq-server", "jq-worker"}
    assert watched <= scrape_jobs, f"alerts watch {watched}, Compose scrapes {scrape_jobs}"
