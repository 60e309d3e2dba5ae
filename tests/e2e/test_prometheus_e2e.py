"""The alert path end to end: simulator -> real daemon -> real Prometheus -> alert.

A real Prometheus server (Debian's `prometheus`) loads the rule groups rendered from the
chart (helm-python-sdk) and scrapes the daemon on 127.0.0.1 every second. A user lock aged
past its rule's threshold (simulated clock) makes `TerraformStateLockStale` (and
`TerraformRunsBlockedByLock`) fire; a config reload switches the daemon to enforce mode, it
force-unlocks the workspace, the series go away and the alerts resolve.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.daemon import base_config, free_port, running_daemon, write_config
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer
from tests.support.tools import require_binary

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCENARIO = """
clock: 2026-01-15T12:00:00Z
organizations:
  demo:
    teams:
      - {name: owners, tokens: [demo-admin-token], access: admin}
    users:
      - {name: bob, access: write}
    workspaces:
      - name: net-dev
        lock: {by: bob, reason: "Locked by Terraform", age: 5h}
      - name: web-dev
"""
WORKSPACE = "net-dev"
RULE = {
    "id": "dev-locks",
    "match": {"workspaces": ["*-dev"]},
    "lock_stale_after": "30m",
    "actions": ["unlock", "force_unlock"],
}
# Both lock alerts fire as soon as their series appear: the test is about the path, not `for`.
ALERTS_NOW = {"TerraformStateLockStale", "TerraformRunsBlockedByLock"}


def rendered_rule_groups() -> list[dict[str, Any]]:
    from tests.chart.render import MINIMAL, merged, only, render

    values = merged(
        MINIMAL,
        {
            "prometheusRule": {
                "enabled": True,
                "rules": {name: {"for": "0s"} for name in ALERTS_NOW},
            }
        },
    )
    groups = only(render(values), "PrometheusRule")["spec"]["groups"]
    assert isinstance(groups, list)
    return groups


@contextmanager
def prometheus_server(tmp_path: Path, target: str) -> Iterator[httpx.Client]:
    """Start Prometheus scraping `target` (host:port) every second; yield an API client."""
    binary = require_binary("prometheus")
    home = tmp_path / "prometheus"
    home.mkdir()
    (home / "rules.yaml").write_text(yaml.safe_dump({"groups": rendered_rule_groups()}))
    (home / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": ["rules.yaml"],
                # The chart's rules select the release's job and namespace: label the
                # target as the Prometheus Operator does (the Service's namespace).
                "scrape_configs": [
                    {
                        "job_name": "tfc-watchdog",
                        "static_configs": [{"targets": [target], "labels": {"namespace": "ops"}}],
                    }
                ],
            }
        )
    )
    port = free_port()
    with (home / "prometheus.log").open("w") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=home,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                wait_until(
                    lambda: _ready(client, process, home),
                    timeout=30,
                    what="Prometheus to become ready",
                )
                yield client
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ready(client: httpx.Client, process: subprocess.Popen[bytes], home: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(
            f"prometheus exited {process.returncode}:\n{(home / 'prometheus.log').read_text()}"
        )
    try:
        return client.get("/-/ready").status_code == 200
    except httpx.TransportError:
        return False


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def active_alerts(client: httpx.Client) -> list[dict[str, Any]]:
    """Pending and firing alerts (resolved ones are not listed by /api/v1/alerts)."""
    response = client.get("/api/v1/alerts")
    response.raise_for_status()
    alerts: list[dict[str, Any]] = response.json()["data"]["alerts"]
    return alerts


def firing(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    return [
        alert
        for alert in active_alerts(client)
        if alert["labels"]["alertname"] == name and alert["state"] == "firing"
    ]


def query(client: httpx.Client, promql: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/query", params={"query": promql})
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def test_stale_lock_alert_fires_then_resolves_when_the_enforcing_daemon_clears_it(
    start_simulator: Callable[..., Any], tmp_path: Path
) -> None:
    require_binary("prometheus")
    with start_simulator(scenario=SCENARIO) as simulator:
        sim: SimulatorServer = simulator
        config = base_config(sim.url, dry_run=True, rules=[RULE])
        path = write_config(tmp_path / "config.yaml", config)
        # Prometheus first, so its ~6 s until the first scrape overlaps the daemon's start.
        with (
            prometheus_server(tmp_path, config["listen"]) as prom,
            running_daemon(path, ADMIN_TOKEN) as daemon,
        ):
            # First sighting of bob's lock, then age it past the rule's 30 minutes.
            daemon.wait_for(
                lambda: any(
                    lock["workspace"] == WORKSPACE
                    for lock in daemon.get("/locks").json().get("locks", [])
                ),
                what="the first sighting of the lock",
            )
            sim.advance(3600)

            stale = wait_until(
                lambda: firing(prom, "TerraformStateLockStale"),
                timeout=40,
                what="TerraformStateLockStale to fire",
            )
            assert len(stale) == 1
            labels = stale[0]["labels"]
            assert labels["organization"] == "demo"
            assert labels["workspace"] == WORKSPACE
            assert labels["holder_type"] == "user"
            assert labels["rule"] == "dev-locks"
            assert "tfc-watchdog scan" in stale[0]["annotations"]["description"]
            blocked = wait_until(
                lambda: firing(prom, "TerraformRunsBlockedByLock"),
                timeout=20,
                what="TerraformRunsBlockedByLock to fire",
            )
            assert [alert["labels"]["workspace"] for alert in blocked] == [WORKSPACE]
            # Dry-run: nothing was changed while the alert fired.
            assert sim.workspace(WORKSPACE)["locked"] is True

            # Enforce mode by a config reload (no restart, so the first sighting is kept).
            write_config(path, {**config, "dry_run": False})
            daemon.wait_for_event("config_reloaded", dry_run=False)
            daemon.wait_for(
                lambda: not sim.workspace(WORKSPACE)["locked"],
                timeout=30,
                what="the daemon to clear the lock",
            )

            wait_until(
                lambda: (
                    not any(
                        alert["labels"]["alertname"] in ALERTS_NOW for alert in active_alerts(prom)
                    )
                ),
                timeout=30,
                what="the lock alerts to resolve",
            )
            done = query(
                prom,
                'tfc_watchdog_actions_total{action=~"unlock|force_unlock",outcome="done"} > 0',
            )
            assert len(done) == 1
