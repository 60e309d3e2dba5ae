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
        "tfc_watchdog_lock_age_at_clear_seconds_bucket",
        "tfc_watchdog_last_success_timestamp_seconds",
        "tfc_watchdog_read_requests_total",
        "tfc_watchdog_fast_path_disabled",
    ):
        assert metric in exprs


def test_the_chart_ships_the_same_dashboard() -> None:
    assert (CHART / "dashboards" / "tfc-watchdog.json").read_text() == DASHBOARD_TEXT
    docs = render(values_sets()["all-features-values.yaml"])
    (config_map,) = [d for d in docs if d["metadata"]["name"].endswith("-dashboard")]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["tfc-watchdog.json"]) == json.loads(DASHBOARD_TEXT)


def _panel(title: str) -> dict[str, Any]:
    (panel,) = [p for p in json.loads(DASHBOARD_TEXT)["panels"] if p["title"] == title]
    assert isinstance(panel, dict)
    return panel


def test_dry_run_reads_on_or_off_not_1_or_0() -> None:
    defaults = _panel("Dry-run")["fieldConfig"]["defaults"]
    (mapping,) = defaults["mappings"]
    assert mapping["type"] == "value"
    assert mapping["options"]["1"]["text"].startswith("on")
    assert mapping["options"]["0"]["text"].startswith("off")


def test_health_stats_turn_colour_at_their_thresholds() -> None:
    def steps(title: str) -> list[tuple[str, float | None]]:
        defaults = _panel(title)["fieldConfig"]["defaults"]
        assert defaults["color"]["mode"] == "thresholds"
        return [(s["color"], s["value"]) for s in defaults["thresholds"]["steps"]]

    assert steps("Stale locks") == [("green", None), ("red", 1)]
    assert steps("Stuck runs") == [("green", None), ("orange", 1)]
    # TfcWatchdogStalled's 3 intervals at the default 60s interval.
    assert steps("Last successful cycle")[1] == ("orange", 180)
    assert steps("Action budget left (this hour)")[0] == ("red", None)


def test_every_panel_selects_namespace_and_job() -> None:
    """Two releases of the same name in two namespaces share a job: the namespace variable
    keeps their numbers apart (its "All" is `.*`, which also matches a Prometheus without
    a namespace label)."""
    dashboard = json.loads(DASHBOARD_TEXT)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["namespace"]["allValue"] == ".*"
    assert "$namespace" in variables["job"]["query"]["query"]
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for selector in re.findall(r"tfc_watchdog_\w+\{([^}]*)\}", target["expr"]):
                assert 'namespace=~"$namespace"' in selector, panel["title"]
                assert 'job=~"$job"' in selector, panel["title"]
