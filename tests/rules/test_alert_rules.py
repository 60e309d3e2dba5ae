"""The alert rules: the chart's PrometheusRule and deploy/prometheus/alerts.yaml are one set,
promtool accepts both, and the promtool unit tests show each alert firing and not firing."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.render import MINIMAL, REPO, merged, only, render
from tests.support.tools import require_binary
from watchdog.metrics import Metrics

ALERTS = REPO / "deploy" / "prometheus" / "alerts.yaml"
UNIT_TESTS = sorted((REPO / "deploy" / "prometheus" / "tests").glob("*.yml"))
EXPECTED_ALERTS = {
    "TerraformStateLockStale",
    "TerraformRunStuck",
    "TerraformRunsBlockedByLock",
    "TfcWatchdogDown",
    "TfcWatchdogStalled",
    "TfcWatchdogCyclesFailing",
    "TfcWatchdogActionsFailing",
    "TfcWatchdogRateLimited",
    "TfcWatchdogConfigRestartRequired",
}
RULES_ON = merged(MINIMAL, {"prometheusRule": {"enabled": True}})


def _chart_groups(values: dict[str, Any] = RULES_ON) -> list[dict[str, Any]]:
    groups = only(render(values), "PrometheusRule")["spec"]["groups"]
    assert isinstance(groups, list)
    return groups


def _rules(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    promtool = require_binary("promtool")
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


def test_alerts_yaml_is_the_charts_default_rule_groups() -> None:
    assert yaml.safe_load(ALERTS.read_text())["groups"] == _chart_groups()


def test_every_alert_of_the_issue_is_defined() -> None:
    assert set(_rules(_chart_groups())) == EXPECTED_ALERTS


def test_rendered_rules_pass_promtool_check(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": _chart_groups()}))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout


def test_alerts_yaml_passes_promtool_check() -> None:
    result = _promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(unit_test: Path) -> None:
    result = _promtool("test", "rules", unit_test.name, cwd=unit_test.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_tests_show_every_alert_firing_and_not_firing() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for unit_test in UNIT_TESTS:
        for case in yaml.safe_load(unit_test.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fired == EXPECTED_ALERTS
    assert quiet == EXPECTED_ALERTS


def test_rules_use_only_metrics_the_watchdog_exports() -> None:
    families = list(Metrics().registry.collect())
    suffixes = {"counter": "_total", "gauge": "", "histogram": "_count", "info": "_info"}
    exported = {f.name + suffixes[f.type] for f in families}
    used = set()
    for rule in _rules(_chart_groups()).values():
        used |= set(re.findall(r"\btfc_watchdog_\w+", rule["expr"]))
        used |= set(re.findall(r"\btfc_watchdog_\w+", rule["annotations"]["description"]))
    assert used - exported == set()


def test_prometheus_templates_in_annotations_survive_helm() -> None:
    stale = _rules(_chart_groups())["TerraformStateLockStale"]
    assert "{{ $labels.workspace }}" in stale["annotations"]["summary"]
    assert "{{ $labels.holder_type }}" in stale["annotations"]["description"]
    assert "tfc-watchdog scan" in stale["annotations"]["description"]
    assert stale["expr"] == "tfc_watchdog_lock_stale == 1"
    assert stale["for"] == "5m"


def test_stalled_threshold_follows_the_configured_interval() -> None:
    for interval, seconds in (("60s", 60), ("5m", 300), ("1h30m", 5400), (90, 90)):
        values = merged(RULES_ON, {"config": {"interval": interval}})
        expr = _rules(_chart_groups(values))["TfcWatchdogStalled"]["expr"]
        assert expr.endswith(f"> 3 * {seconds}"), expr


def test_stalled_bridges_restarts_and_missed_scrapes() -> None:
    """A restarted process exports 0 until its first success, after scrapes that failed:
    the alert takes the newest success over a window longer than a restart's gap, so that
    restarts do not reset its `for` (deploy/prometheus/tests: a container restarted every
    5 minutes through an hour's outage still fires)."""
    expr = _rules(_chart_groups())["TfcWatchdogStalled"]["expr"]
    assert "max_over_time(tfc_watchdog_last_success_timestamp_seconds[10m])" in expr


def test_down_alert_watches_the_releases_job() -> None:
    groups = only(render(RULES_ON, release="lockwatch"), "PrometheusRule")["spec"]["groups"]
    expr = _rules(groups)["TfcWatchdogDown"]["expr"]
    job = 'job="lockwatch-tfc-watchdog"'
    assert expr == f"up{{{job}}} == 0 or absent(up{{{job}}})"


def test_each_alert_can_be_disabled_or_overridden() -> None:
    values = merged(
        RULES_ON,
        {
            "prometheusRule": {
                "rules": {
                    "TfcWatchdogRateLimited": {"enabled": False},
                    "TerraformStateLockStale": {"for": "15m", "labels": {"severity": "critical"}},
                }
            }
        },
    )
    rules = _rules(_chart_groups(values))
    assert "TfcWatchdogRateLimited" not in rules
    assert rules["TerraformStateLockStale"]["for"] == "15m"
    assert rules["TerraformStateLockStale"]["labels"] == {"severity": "critical"}
    assert rules["TerraformStateLockStale"]["expr"] == "tfc_watchdog_lock_stale == 1"
