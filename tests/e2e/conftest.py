"""Shared pieces of the end-to-end tests of the TFC watchdog: the real `tfc-watchdog run`
process against the real simulator (an HTTP server on 127.0.0.1).

`harness` (a fixture) writes configs into the test's tmp_path and starts daemons; the plain
functions read what reached the simulator and what the daemon reported.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import (
    GUARD,
    DaemonProcess,
    base_config,
    run_cli,
    running_daemon,
    write_config,
)
from tests.support.simulator import ADMIN_TOKEN, ORG_TOKEN, USER_TOKEN, SimulatorServer
from watchdog.metrics import Metrics

# A fixed simulated start, on a whole second: the `Date` header has second precision, so
# ages computed from it are exact.
CLOCK = "2026-01-15T12:00:00Z"

T = TypeVar("T")

# The `start_simulator` fixture of tests/support/simulator.py.
StartSimulator = Callable[..., contextlib.AbstractContextManager[SimulatorServer]]


def scenario(workspaces: list[dict[str, Any]], *, cooloff: str = "5m") -> str:
    """A small `demo` organization with the demo's tokens and people, and these workspaces."""
    spec = {
        "clock": CLOCK,
        "cooloff": cooloff,
        "organizations": {
            "demo": {
                "organization_token": ORG_TOKEN,
                "teams": [
                    {"name": "owners", "tokens": [ADMIN_TOKEN], "access": "admin"},
                    {"name": "developers", "access": "write"},
                ],
                "users": [
                    {"name": "operator", "tokens": [USER_TOKEN], "access": "write"},
                    {"name": "alice", "access": "write"},
                    {"name": "bob", "access": "write"},
                ],
                "workspaces": workspaces,
            }
        },
    }
    return yaml.safe_dump(spec, sort_keys=False)


def demo_scenario() -> str:
    """The built-in demo scenario, on the fixed clock."""
    from watchdog.simulator.scenario import builtin_text

    return f"clock: {CLOCK}\n" + builtin_text("demo")


def wait_until(condition: Callable[[], T | None], what: str, timeout: float = GUARD) -> T:
    """A guard against hanging, never a timing assertion: machines are loaded."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def sim_now(sim: SimulatorServer) -> datetime:
    return parse_time(sim.clock()["now"])


def posts(sim: SimulatorServer) -> list[dict[str, Any]]:
    return [r for r in sim.requests() if r["method"] != "GET"]


def post_paths(sim: SimulatorServer) -> list[str]:
    return [r["path"] for r in posts(sim)]


def audit(daemon: DaemonProcess, outcome: str | None = None) -> list[dict[str, Any]]:
    """The audit events of act.py (one per outcome), optionally of one outcome."""
    return [
        e
        for e in daemon.events()
        if "action" in e and "outcome" in e and outcome in (None, e["outcome"])
    ]


def not_acting(daemon: DaemonProcess, workspace: str) -> list[str]:
    return [e["reason"] for e in daemon.events("not_acting") if e.get("workspace") == workspace]


def report(daemon: DaemonProcess) -> dict[str, Any] | None:
    """The /locks document, or None before the first cycle."""
    try:
        response = daemon.get("/locks")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    document: dict[str, Any] = response.json()
    return document


def report_at(daemon: DaemonProcess, at: datetime) -> dict[str, Any]:
    """Wait for a /locks document made from reads at simulated time `at` (or later)."""

    def fresh() -> dict[str, Any] | None:
        document = report(daemon)
        if document is None or parse_time(document["generated_at"]) < at:
            return None
        return document

    found: dict[str, Any] = daemon.wait_for(
        fresh, GUARD, f"a /locks report generated at {at.isoformat()}"
    )
    return found


def locks_by_workspace(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lock["workspace"]: lock for lock in document["locks"]}


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name` whose labels include `labels` (None if absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def enforce(actions: list[str], **overrides: Any) -> dict[str, Any]:
    """Config overrides: enforcing, user/team locks stale after 1h, these rungs everywhere."""
    config: dict[str, Any] = {
        "dry_run": False,
        "defaults": {"lock_stale_after": "1h", "actions": actions},
    }
    config.update(overrides)
    return config


def locked_by(who: str, name: str = "stale", reason: str = "Locked by Terraform") -> dict[str, Any]:
    """A scenario workspace `name` whose lock `who` holds."""
    return {"name": name, "lock": {"by": who, "reason": reason}}


def metrics_text(daemon: DaemonProcess) -> str:
    return daemon.get("/metrics").text


def workspace_id(sim: SimulatorServer, name: str) -> str:
    value: str = sim.workspace(name)["id"]
    return value


class Harness:
    """Writes configs (one file per daemon) and starts the daemon against a simulator."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.state_file = str(tmp_path / "state.json")
        self._configs = 0

    def config(self, sim: SimulatorServer, **overrides: Any) -> Path:
        # A quarter of a second between cycles: these tests mostly wait for cycles. The
        # simulated clock (frozen unless advanced) makes every age exact whatever the
        # machine's load, and a cycle that overruns the interval only delays the next.
        config = base_config(sim.url, **{"interval": 0.25, **overrides})
        self._configs += 1
        return write_config(self.tmp_path / f"config-{self._configs}.yaml", config)

    @contextlib.contextmanager
    def daemon(
        self, sim: SimulatorServer, token: str | None = ADMIN_TOKEN, **overrides: Any
    ) -> Iterator[DaemonProcess]:
        with running_daemon(self.config(sim, **overrides), token) as daemon:
            yield daemon

    def once(
        self, sim: SimulatorServer, token: str | None = ADMIN_TOKEN, **overrides: Any
    ) -> DaemonProcess:
        """`run --once` to completion (check `process.returncode`)."""
        daemon = DaemonProcess(self.config(sim, **overrides), token, once=True)
        daemon.wait_exit()
        return daemon


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


@pytest.fixture
def metrics() -> Metrics:
    """A fresh registry for a source or actor under test in this process."""
    return Metrics()


def wait_for_stale_scan(config_path: Path) -> dict[str, Any]:
    """The report of `scan --output json` once it exits 3 (a stale lock); until then it must
    exit 0 (nothing stale yet), never fail."""

    def stale_scan() -> dict[str, Any] | None:
        result = run_cli("scan", "--config", str(config_path), "--output", "json")
        assert result.returncode in (0, 3), result.stderr
        return json.loads(result.stdout) if result.returncode == 3 else None

    return wait_until(stale_scan, "scan to call the lock stale")


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include `labels` (0 if there is none)."""
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture
def cli_config(tmp_path: Path, simulator: SimulatorServer) -> Path:
    """The config of a command a person types (`wait`, `unlock`) against the `simulator`
    fixture: JSON log lines at info, dry_run as the defaults say."""
    log = {"format": "json", "level": "info"}
    return write_config(tmp_path / "watchdog.yaml", base_config(simulator.url, log=log))
