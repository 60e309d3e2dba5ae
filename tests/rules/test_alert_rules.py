"""The alert rules: the chart's PrometheusRule and deploy/prometheus/alerts.yaml are one set,
promtool accepts both, and the promtool unit tests show each alert firing and not firing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.render import MINIMAL, REPO, merged, only, render
from tests.support.process import run_captured
from tests.support.tools import require_binary
from watchdog.metrics import LOCK_STALE_LABELS, RUNS_BLOCKED_LABELS, Metrics

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
    "TfcWatchdogConfigReloadFailed",
    "TfcWatchdogParseErrors",
    "TfcWatchdogFastPathDisabled",
}
CHART_UNIT_TESTS = REPO / "tests" / "rules" / "promtool"
RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/tfc-watchdog/tfc-watchdog/blob/main/docs/runbook.md"
RULES_ON = merged(MINIMAL, {"prometheusRule": {"enabled": True}})


def _chart_groups(
    values: dict[str, Any] = RULES_ON, namespace: str = "ops"
) -> list[dict[str, Any]]:
    groups = only(render(values, namespace=namespace), "PrometheusRule")["spec"]["groups"]
    assert isinstance(groups, list)
    return groups


def _rules(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_captured([require_binary("promtool"), *args], cwd=cwd)


def test_alerts_yaml_is_the_charts_default_rule_groups() -> None:
    """Without the operator there is no namespace to select: the standalone file is the
    chart's rules (release tfc-watchdog) with the job matcher alone."""
    chart = json.dumps(_chart_groups()).replace(',namespace=\\"ops\\"', "")
    assert yaml.safe_load(ALERTS.read_text())["groups"] == json.loads(chart)


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
    assert stale["expr"] == 'tfc_watchdog_lock_stale{job="tfc-watchdog",namespace="ops"} == 1'
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
    assert (
        'max_over_time(tfc_watchdog_last_success_timestamp_seconds{job="tfc-watchdog",'
        'namespace="ops"}[10m])'
    ) in expr


def test_down_alert_watches_the_releases_job_in_its_namespace() -> None:
    groups = only(render(RULES_ON, release="lockwatch", namespace="dev"), "PrometheusRule")["spec"][
        "groups"
    ]
    expr = _rules(groups)["TfcWatchdogDown"]["expr"]
    job = 'job="lockwatch-tfc-watchdog",namespace="dev"'
    assert expr == f"up{{{job}}} == 0 or absent(up{{{job}}})"


def test_each_alert_can_be_disabled_or_overridden() -> None:
    values = merged(
        RULES_ON,
        {
            "prometheusRule": {
                "rules": {
                    "TfcWatchdogRateLimited": {"enabled": False},
                    "TfcWatchdogFastPathDisabled": {"enabled": False},
                    "TerraformStateLockStale": {"for": "15m", "labels": {"severity": "critical"}},
                }
            }
        },
    )
    rules = _rules(_chart_groups(values))
    assert "TfcWatchdogRateLimited" not in rules
    assert "TfcWatchdogFastPathDisabled" not in rules
    assert rules["TerraformStateLockStale"]["for"] == "15m"
    assert rules["TerraformStateLockStale"]["labels"] == {"severity": "critical"}
    assert rules["TerraformStateLockStale"]["expr"] == (
        'tfc_watchdog_lock_stale{job="tfc-watchdog",namespace="ops"} == 1'
    )


# --- scoped to the release -------------------------------------------------------------------


def test_every_default_expression_selects_the_releases_job_and_namespace() -> None:
    """Every series an expression reads carries the release's matchers (so one release's
    rules never answer for another's targets), and every aggregation keeps both labels."""
    values = merged(RULES_ON, {"fullnameOverride": "lockwatch"})
    for name, rule in _rules(_chart_groups(values, namespace="dev")).items():
        expr = rule["expr"]
        selectors = re.findall(r"\b(?:tfc_watchdog_\w+|up)\{([^}]*)\}", expr)
        bare = re.findall(r"\b(?:tfc_watchdog_\w+|up)\b(?!\{)", expr)
        assert selectors, name
        assert bare == [], name
        for selector in selectors:
            assert 'job="lockwatch"' in selector, name
            assert 'namespace="dev"' in selector, name
        for grouping in re.findall(r"\bby \(([^)]*)\)", expr):
            assert {"namespace", "job"} <= {g.strip() for g in grouping.split(",")}, name


def _promtool_chart_test(name: str, rule_files: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    for file_name, values in rule_files.items():
        groups = _chart_groups(values, namespace=file_name.removesuffix(".yaml"))
        (tmp_path / file_name).write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(CHART_UNIT_TESTS / name, tmp_path / name)
    result = _promtool("test", "rules", name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_releases_in_two_namespaces_each_alert_once_for_their_own(tmp_path: Path) -> None:
    """tests/rules/promtool/two_namespaces_test.yml: a target that disappears in one
    namespace fires Down while the other is scraped; a stale lock fires once, not once
    per release; failed actions keep their namespace."""
    _promtool_chart_test(
        "two_namespaces_test.yml", {"ops.yaml": RULES_ON, "dev.yaml": RULES_ON}, tmp_path
    )


def test_cycles_failing_fires_at_a_long_interval(tmp_path: Path) -> None:
    """tests/rules/promtool/long_interval_test.yml: at interval 30m, 3.5 hours of failing
    cycles fire CyclesFailing (a fixed 10m window held a cycle a third of the time)."""
    values = merged(RULES_ON, {"config": {"interval": "30m"}})
    _promtool_chart_test("long_interval_test.yml", {"ops.yaml": values}, tmp_path)


@pytest.mark.parametrize(
    ("interval", "window"),
    [("60s", "10m"), ("3m", "10m"), ("5m", "15m"), ("30m", "90m"), (90, "10m"), (250, "750s")],
)
def test_rate_windows_are_three_intervals_at_least_ten_minutes(
    interval: str | int, window: str
) -> None:
    rules = _rules(_chart_groups(merged(RULES_ON, {"config": {"interval": interval}})))
    assert rules["TfcWatchdogCyclesFailing"]["expr"].count(f"[{window}])") == 2
    assert f"[{window}])" in rules["TfcWatchdogParseErrors"]["expr"]
    assert f"[{window}])" in rules["TfcWatchdogRateLimited"]["expr"]


def test_fast_path_disabled_fires_across_long_recheck_dips(tmp_path: Path) -> None:
    """tests/rules/promtool/long_full_scan_test.yml: at full_scan_interval 40m the gauge
    reads 0 for 35 minutes after each hourly recheck; a switch that persists still fires
    (a fixed 30m window would restart `for` at each dip), a one-off one does not."""
    values = merged(RULES_ON, {"config": {"interval": "5m", "tfc": {"full_scan_interval": "40m"}}})
    _promtool_chart_test("long_full_scan_test.yml", {"ops.yaml": values}, tmp_path)


@pytest.mark.parametrize(
    ("interval", "full_scan_interval", "window"),
    [
        ("60s", "10m", "30m"),
        ("30m", "10m", "70m"),
        ("5m", "1h", "70m"),
        ("30s", "45m", "46m"),
        ("60s", 0, "30m"),
        (90, "40m", "43m"),
        ("45s", "30m", "1890s"),
    ],
)
def test_fast_path_window_bridges_a_recheck_dip(
    interval: str | int, full_scan_interval: str | int, window: str
) -> None:
    """After its hourly recheck the gauge reads 0 until the next full walk (up to
    full_scan_interval and a cycle later) finds the same miss: the window spans
    full_scan_interval plus 2 intervals, at least 30 minutes."""
    values = merged(
        RULES_ON,
        {"config": {"interval": interval, "tfc": {"full_scan_interval": full_scan_interval}}},
    )
    expr = _rules(_chart_groups(values))["TfcWatchdogFastPathDisabled"]["expr"]
    assert expr == (
        'max_over_time(tfc_watchdog_fast_path_disabled{job="tfc-watchdog",namespace="ops"}'
        f"[{window}]) == 1"
    )


# --- runbooks --------------------------------------------------------------------------------


def _runbook_sections() -> dict[str, str]:
    """GitHub's anchor of each `## ` heading -> the text under it."""
    sections: dict[str, str] = {}
    for chunk in re.split(r"^## ", RUNBOOK.read_text(), flags=re.MULTILINE)[1:]:
        heading, _, body = chunk.partition("\n")
        sections[heading.strip().lower()] = body
    return sections


def test_every_alert_links_its_runbook_section() -> None:
    sections = _runbook_sections()
    for name, rule in _rules(_chart_groups()).items():
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_URL}#{name.lower()}"
        body = sections[name.lower()]
        for part in ("**Meaning.**", "**First checks.**", "**Fix.**"):
            assert part in body, (name, part)
    assert set(sections) == {name.lower() for name in EXPECTED_ALERTS}


def test_the_runbook_base_can_move_and_an_alert_can_keep_its_own() -> None:
    values = merged(
        RULES_ON,
        {
            "prometheusRule": {
                "runbookUrl": "https://wiki.example.com/tfc-watchdog",
                "rules": {
                    "TfcWatchdogDown": {"annotations": {"runbook_url": "https://pager/x"}},
                    "Mine": {"enabled": True, "expr": "vector(1)"},
                },
            }
        },
    )
    rules = _rules(_chart_groups(values))
    assert rules["TfcWatchdogStalled"]["annotations"]["runbook_url"] == (
        "https://wiki.example.com/tfc-watchdog#tfcwatchdogstalled"
    )
    assert rules["TfcWatchdogDown"]["annotations"]["runbook_url"] == "https://pager/x"
    assert rules["Mine"]["annotations"]["runbook_url"].endswith("#mine")


def test_the_readmes_inhibition_example_pairs_the_lock_alerts_on_shared_labels() -> None:
    """LockStale and RunsBlockedByLock fire together for one workspace; the README's
    Alertmanager example silences the first while the second fires, matching only on
    labels both carry (a label one lacks would never be equal, so nothing is inhibited)."""
    readme = (REPO / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "inhibit_rules" in b]
    (rule,) = yaml.safe_load(block)["inhibit_rules"]
    assert rule["source_matchers"] == ['alertname="TerraformRunsBlockedByLock"']
    assert rule["target_matchers"] == ['alertname="TerraformStateLockStale"']
    shared = {"namespace", "job"} | (set(RUNS_BLOCKED_LABELS) & set(LOCK_STALE_LABELS))
    assert set(rule["equal"]) == shared
