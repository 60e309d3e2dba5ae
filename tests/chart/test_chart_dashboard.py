"""The Grafana dashboard: valid JSON, only metrics the watchdog exports, shipped by the chart."""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client.metrics_core import Metric

from tests.chart.render import CHART, REPO, render, values_sets
from watchdog.metrics import Metrics

DASHBOARD_TEXT = (REPO / "deploy" / "grafana" / "dashboard.json").read_text()
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "info": ("_info",),
}


def _exported_names() -> set[str]:
    families: list[Metric] = list(Metrics().registry.collect())
    return {f.name + suffix for f in families for suffix in SUFFIXES[f.type]}


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["query"]["query"])
    return exprs


def test_dashboard_is_valid_json_with_unique_panel_ids() -> None:
    dashboard = json.loads(DASHBOARD_TEXT)
    assert dashboard["uid"] == "tfc-watchdog"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_expression_uses_only_metrics_the_watchdog_exports() -> None:
    exported = _exported_names()
    used = set()
    for expr in _exprs(json.loads(DASHBOARD_TEXT)):
        used |= set(re.findall(r"\btfc_watchdog_\w+", expr))
    assert used
    assert used - exported == set()


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    exprs = " ".join(_exprs(json.loads(DASHBOARD_TEXT)))
    for metric in (
        "tfc_watchdog_locked_workspaces",
        "tfc_watchdog_lock_stale",
        "tfc_watchdog_runs_blocked",
        "tfc_watchdog_stuck_runs",
        "tfc_watchdog_actions_total",
        "tfc_watchdog_api_requests_total",
        "tfc_watchdog_api_rate_limited_total",
        "tfc_watchdog_cycle_duration_seconds_bucket",
        "tfc_watchdog_last_success_timestamp_seconds",
    ):
        assert metric in exprs


def test_the_chart_ships_the_same_dashboard() -> None:
    assert (CHART / "dashboards" / "tfc-watchdog.json").read_text() == DASHBOARD_TEXT
    docs = render(values_sets()["all-features-values.yaml"])
    (config_map,) = [d for d in docs if d["metadata"]["name"].endswith("-dashboard")]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["tfc-watchdog.json"]) == json.loads(DASHBOARD_TEXT)
