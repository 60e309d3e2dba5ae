"""Observation end to end: the real `tfc-watchdog run` / `scan` processes against
the real simulator. Observe only: what the daemon reports (/locks, /metrics) and what reached
the server (the simulator's request log: workspace lists, never a POST)."""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    Harness,
    StartSimulator,
    demo_scenario,
    locks_by_workspace,
    metric,
    metrics_text,
    report_at,
    scenario,
    sim_now,
)
from tests.support.daemon import free_port, run_cli, write_config
from tests.support.logstate import undo_logging
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer
from watchdog.cli import main

pytestmark = pytest.mark.e2e

LIST = "/api/v2/organizations/demo/workspaces"
HOUR = 3600


def test_locks_and_metrics_show_the_stale_run_lock_with_its_simulated_age(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    with start_simulator(scenario=demo_scenario()) as sim, harness.daemon(sim) as daemon:
        now = sim_now(sim)
        document = report_at(daemon, now)
        lock = locks_by_workspace(document)["payments-prod"]
        # The demo's apply entered `applying` 7 h ago on the simulated clock.
        assert lock["holder_type"] == "run"
        assert lock["age_source"] == "run"
        assert lock["age_seconds"] == 7 * HOUR
        assert lock["stale"] is True
        assert lock["run"]["status"] == "applying"
        assert lock["lock_id"] == "demo/payments-prod"

        text = metrics_text(daemon)
        labels = {
            "source": "tfc",
            "organization": "demo",
            "workspace": "payments-prod",
            "holder_type": "run",
        }
        since = metric(text, "tfc_watchdog_lock_since_timestamp_seconds", **labels)
        assert since == (now - timedelta(hours=7)).timestamp()
        assert metric(text, "tfc_watchdog_lock_stale", **labels, rule="defaults") == 1
        assert metric(text, "tfc_watchdog_stuck_runs", organization="demo", status="applying") == 1
        # Unlocked workspaces have no per-lock series.
        assert (
            metric(text, "tfc_watchdog_lock_since_timestamp_seconds", workspace="service-01-dev")
            is None
        )


def test_a_user_lock_becomes_stale_only_after_lock_stale_after_of_observation(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    with start_simulator(scenario=demo_scenario()) as sim, harness.daemon(sim) as daemon:
        start = sim_now(sim)
        # The scenario says bob's lock is 5 h old, but the API has no lock timestamp: the
        # watchdog ages it from its own first sighting.
        lock = locks_by_workspace(report_at(daemon, start))["legacy-network"]
        assert (lock["age_source"], lock["age_seconds"], lock["stale"]) == ("first_seen", 0, False)

        sim.advance(2 * HOUR)  # exactly lock_stale_after (2h): not yet older than it
        lock = locks_by_workspace(report_at(daemon, sim_now(sim)))["legacy-network"]
        assert (lock["age_seconds"], lock["stale"]) == (2 * HOUR, False)
        labels = {"workspace": "legacy-network", "holder_type": "user", "rule": "defaults"}
        assert metric(metrics_text(daemon), "tfc_watchdog_lock_stale", **labels) == 0

        sim.advance(1)
        lock = locks_by_workspace(report_at(daemon, sim_now(sim)))["legacy-network"]
        assert (lock["age_seconds"], lock["stale"]) == (2 * HOUR + 1, True)
        assert lock["since"] == start.isoformat().replace("+00:00", "Z")
        assert metric(metrics_text(daemon), "tfc_watchdog_lock_stale", **labels) == 1


def test_scan_json_matches_the_daemons_locks(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    with start_simulator(scenario=demo_scenario()) as sim:
        config = harness.config(sim)
        with harness.daemon(sim) as daemon:
            document = report_at(daemon, sim_now(sim))
        scan = run_cli("scan", "--config", str(config), "--output", "json", token=ADMIN_TOKEN)
    assert scan.returncode == 3, scan.stderr
    scanned = json.loads(scan.stdout)
    # The clock stood still: a fresh scan and the daemon saw the same world at the same time.
    assert scanned["locks"] == document["locks"]
    assert scanned["findings"] == document["findings"]
    assert {lock["workspace"] for lock in scanned["locks"]} == {
        "payments-prod",
        "legacy-network",
        "billing-staging",
        "web-dev",
        "analytics-dev",
        "prod-core",
    }


def _list_requests_only(sim: SimulatorServer) -> list[dict[str, object]]:
    requests = sim.requests()
    assert [r for r in requests if r["method"] != "GET"] == []
    others = [r for r in requests if r["path"] not in (LIST, "/api/v2/ping")]
    assert others == []
    return [r for r in requests if r["path"] == LIST]


def test_the_demo_is_observed_with_one_workspace_list_per_cycle_and_no_post(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    with start_simulator(scenario=demo_scenario()) as sim:
        with harness.daemon(sim) as daemon:
            sim.reset_requests()
            daemon.wait_cycles(3)
            observed = daemon.cycles_completed()
        # Stopped: the cycle in progress at SIGTERM finished, so every cycle is whole here.
        lists = _list_requests_only(sim)
    assert len(lists) >= 3
    assert all(r["status"] == 200 and r["principal"] == "owners" for r in lists)
    assert observed >= 3
    assert all("page%5Bsize%5D=100" in str(r["query"]) for r in lists)


def test_250_workspaces_take_three_list_requests_per_cycle(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    count = 250
    workspaces = [{"generate": {"count": count, "name": "svc-{n:03d}"}}]
    with start_simulator(scenario=scenario(workspaces)) as sim:
        with harness.daemon(sim) as daemon:
            sim.reset_requests()
            daemon.wait_cycles(3)
        lists = _list_requests_only(sim)
    numbers = [
        int(str(request["query"]).split("page%5Bnumber%5D=")[1].split("&")[0]) for request in lists
    ]
    per_cycle = math.ceil(count / 100)
    # The log was emptied while a cycle may have been under way, and the daemon stopped while
    # another may have been: whole cycles are judged, each from its page 1 to the next.
    starts = [index for index, number in enumerate(numbers) if number == 1]
    cycles = [sorted(numbers[a:b]) for a, b in itertools.pairwise(starts)]
    assert len(cycles) >= 2, numbers
    # Every cycle read pages 1..3 once: nothing more (no per-workspace or run-list reads).
    assert all(pages == list(range(1, per_cycle + 1)) for pages in cycles), numbers


def test_a_restart_with_the_same_state_file_keeps_user_lock_ages(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    with start_simulator(scenario=demo_scenario()) as sim:
        with harness.daemon(sim, state_file=harness.state_file) as daemon:
            report_at(daemon, sim_now(sim))
            sim.advance(HOUR)
            report_at(daemon, sim_now(sim))
        # A quick restart (the server's clock did not move while the process was down): the
        # same locks, watched without a gap, keep their ages.
        with harness.daemon(sim, state_file=harness.state_file) as daemon:
            report_at(daemon, sim_now(sim))
            sim.advance(HOUR)
            kept = locks_by_workspace(report_at(daemon, sim_now(sim)))
        with harness.daemon(sim) as daemon:
            restarted = locks_by_workspace(report_at(daemon, sim_now(sim)))
    assert Path(harness.state_file).exists()
    # First seen two simulated hours ago, by the first process.
    assert kept["legacy-network"]["age_seconds"] == 2 * HOUR
    assert kept["analytics-dev"]["age_seconds"] == 2 * HOUR
    # Without the state file, the age of a user/team lock restarts; a run lock's does not.
    assert restarted["legacy-network"]["age_seconds"] == 0
    assert restarted["analytics-dev"]["age_seconds"] == 0
    assert restarted["payments-prod"]["age_seconds"] == kept["payments-prod"]["age_seconds"]


def test_run_once_exits_0_after_one_cycle(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    with start_simulator(scenario=demo_scenario()) as sim:
        daemon = harness.once(sim)
        lists = _list_requests_only(sim)
    assert daemon.process.returncode == 0, "\n".join(daemon.lines[-20:])
    assert len(lists) == 1
    assert daemon.events("finding")


def test_run_once_exits_1_when_a_source_cannot_be_read(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    # A rejected token: the read fails at once (an unreachable API is the same exit code,
    # after the client's retries: `scan` shows it below).
    with start_simulator(scenario=demo_scenario()) as sim:
        daemon = harness.once(sim, token="not-a-known-token")
    assert daemon.process.returncode == 1, "\n".join(daemon.lines[-20:])


@dataclass(frozen=True)
class Scanned:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def scan(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., Scanned]]:
    """`tfc-watchdog scan ARGS` in this process (its exit code, stdout and stderr): the same
    entry point as the command, without a Python start-up per exit code. The logging set-up
    and the masked secrets it leaves behind are undone afterwards."""
    for name in [n for n in os.environ if n.startswith("TFC_WATCHDOG_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TFC_WATCHDOG_TOKEN", ADMIN_TOKEN)

    def run(*args: str) -> Scanned:
        code = main(["scan", *args])
        out, err = capsys.readouterr()
        return Scanned(code, out, err)

    try:
        yield run
    finally:
        undo_logging()


class _Nowhere:
    """Stands in for a simulator: a 127.0.0.1 port nothing listens on."""

    url = f"http://127.0.0.1:{free_port()}"


def _nowhere_tfc() -> dict[str, object]:
    return {"address": _Nowhere.url, "organizations": ["demo"], "timeout": "2s"}


def test_scan_exits_0_when_nothing_is_stale(
    start_simulator: StartSimulator, harness: Harness, scan: Callable[..., Scanned]
) -> None:
    workspaces: list[dict[str, Any]] = [
        {"name": "young", "lock": {"by": "alice", "reason": "Locked by Terraform"}},
        {"name": "quiet", "runs": [{"status": "applied", "age": "1d"}]},
    ]
    with start_simulator(scenario=scenario(workspaces)) as sim:
        config = harness.config(sim)
        result = scan("--config", str(config), "--output", "json")
        requests = sim.requests()
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [lock["workspace"] for lock in document["locks"]] == ["young"]
    assert {f["kind"] for f in document["findings"]} == {"lock_held"}
    assert [r["method"] for r in requests] == ["GET"]


def test_scan_exits_3_when_something_is_stale(
    start_simulator: StartSimulator, harness: Harness, scan: Callable[..., Scanned]
) -> None:
    with start_simulator(scenario=demo_scenario()) as sim:
        result = scan("--config", str(harness.config(sim)))
    assert result.returncode == 3, result.stderr
    assert "demo/payments-prod" in result.stdout
    # A run-held lock is cleared by ending its run: the manual fix says so.
    assert "demo/payments-prod: cancel run" in result.stdout


def test_scan_exits_2_on_a_config_error(tmp_path: Path, scan: Callable[..., Scanned]) -> None:
    config = write_config(
        tmp_path / "bad.yaml",
        {"interval": "soon", "tfc": {"address": "http://127.0.0.1:1", "organizations": ["x"]}},
    )
    result = scan("--config", str(config))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "interval" in result.stderr
    assert ADMIN_TOKEN not in result.stderr


@pytest.mark.slow  # the client retries a refused connection with backoff before giving up
def test_scan_exits_1_with_a_one_line_reason_when_the_api_is_unreachable(
    harness: Harness,
) -> None:
    config = harness.config(_Nowhere(), tfc=_nowhere_tfc())  # type: ignore[arg-type]
    result = run_cli("scan", "--config", str(config), token=ADMIN_TOKEN)
    assert result.returncode == 1
    reasons = [line for line in result.stderr.splitlines() if line.startswith("tfc-watchdog scan:")]
    assert len(reasons) == 1, result.stderr
    assert "could not read tfc demo" in reasons[0]
    assert ADMIN_TOKEN not in result.stderr + result.stdout
