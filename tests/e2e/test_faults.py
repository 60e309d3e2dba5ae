"""The real daemon against the simulator on a bad day: faults, signals, a crash and a restart.

The daemon enforces (dry_run false) with rungs allowed, so that every "no POST" below is a
decision, not an accident of configuration.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs installed
import pytest

from tests.support.daemon import DaemonProcess, base_config, running_daemon, write_config
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer

pytestmark = pytest.mark.e2e

CYCLES_UNDER_FAULTS = 200
# Faults on the organization's list page, each per request: every kind the issue names.
# The kinds the client retries (5xx, 429, timeouts, dropped and truncated bodies) are rarer
# so that 200 cycles fit the suite's time budget.
LIST_FAULTS: list[dict[str, Any]] = [
    {"kind": "malformed", "probability": 0.2},
    {"kind": "content_type", "probability": 0.1},
    {"kind": "status", "status": 500, "probability": 0.03},
    {"kind": "status", "status": 502, "probability": 0.02},
    {"kind": "status", "status": 503, "probability": 0.02},
    {"kind": "status", "status": 429, "probability": 0.02},
    {"kind": "latency", "latency_ms": 400, "probability": 0.02},
    {"kind": "truncated", "probability": 0.02},
    {"kind": "drop", "probability": 0.02},
]
LIST_PATH = r"^/api/v2/organizations/[^/]+/workspaces$"
# Every re-read of one workspace fails: the watchdog plans actions but can never verify them.
REREAD_PATH = r"^/api/v2/workspaces/[^/]+$"


def _enforcing(simulator: SimulatorServer, tmp_path: Path, **overrides: Any) -> Path:
    settings: dict[str, Any] = {
        "dry_run": False,
        "interval": 0.1,
        "state_file": str(tmp_path / "state.json"),
        "limits": {"max_actions_per_cycle": 5, "max_actions_per_hour": 100},
        "defaults": {"actions": ["cancel", "force_cancel", "discard", "force_unlock"]},
    }
    config = base_config(simulator.url, **{**settings, **overrides})
    config["log"] = {"format": "json", "level": "info"}
    config["tfc"]["timeout"] = 0.3
    return write_config(tmp_path / "config.yaml", config)


def _posts(simulator: SimulatorServer) -> list[dict[str, Any]]:
    return [r for r in simulator.requests() if r["method"] == "POST"]


def _metric(daemon: DaemonProcess, name: str) -> float:
    total = 0.0
    for line in daemon.get("/metrics").text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head = line.split()[0]
            if head == name or head.startswith(name + "{"):
                total += float(line.split()[-1])
    return total


def _rss(daemon: DaemonProcess) -> int:
    return int(psutil.Process(daemon.process.pid).memory_info().rss)


def test_two_hundred_cycles_of_faults_no_crash_no_unverified_action_and_recovery(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    for fault in LIST_FAULTS:
        simulator.inject_fault(path=LIST_PATH, method="GET", **fault)
    simulator.inject_fault("malformed", REREAD_PATH, method="GET")
    config = _enforcing(simulator, tmp_path)
    with running_daemon(config, ADMIN_TOKEN, ready=False) as daemon:
        daemon.wait_for(lambda: daemon.cycles_completed() >= 50, 60, "50 cycles")
        rss_50 = _rss(daemon)
        daemon.wait_for(lambda: daemon.cycles_completed() >= CYCLES_UNDER_FAULTS, 120, "200 cycles")
        rss_200 = _rss(daemon)
        assert daemon.process.poll() is None
        assert _posts(simulator) == [], "a POST was sent although no re-read succeeded"
        assert _metric(daemon, "tfc_watchdog_observe_errors_total") > 0
        assert _metric(daemon, "tfc_watchdog_cycle_failures_total") > 0
        assert _metric(daemon, "tfc_watchdog_actions_total") > 0  # it did plan, and held back
        fired = sum(f["fired"] for f in simulator.faults())
        assert fired >= CYCLES_UNDER_FAULTS
        assert not daemon.events("cycle_failed"), "a fault turned into an exception"
        assert rss_200 <= rss_50 * 1.10, (rss_50, rss_200)

        simulator.clear_faults()
        cleared_at = time.time()
        done = daemon.cycles_completed()
        # The first cycle that starts after the faults stop succeeds and acts.
        daemon.wait_for(lambda: daemon.cycles_completed() >= done + 2, 30, "two more cycles")
        assert _metric(daemon, "tfc_watchdog_last_success_timestamp_seconds") >= cleared_at
        assert daemon.get("/readyz").status_code == 200
        daemon.wait_for(lambda: _posts(simulator), 10, "the first action after recovery")
        print(
            f"faults: {daemon.cycles_completed()} cycles, {fired} faults fired, "
            f"rss at 50 {rss_50 / 2**20:.1f} MiB, at 200 {rss_200 / 2**20:.1f} MiB"
        )
    assert daemon.process.returncode == 0


def test_sigterm_during_a_cycle_sends_no_further_post_and_exits_0(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    # The re-read before the first action hangs for a while: SIGTERM arrives inside the cycle.
    simulator.inject_fault("latency", REREAD_PATH, method="GET", latency_ms=1500)
    config = _enforcing(simulator, tmp_path, interval=60)
    daemon = DaemonProcess(config, ADMIN_TOKEN)
    try:
        daemon.wait_for(
            lambda: any("/organizations/" in r["path"] for r in simulator.requests()),
            30,
            "the first list read",
        )
        daemon.process.send_signal(signal.SIGTERM)
        code = daemon.wait_exit(30)
    finally:
        daemon.stop()
    assert code == 0
    assert _posts(simulator) == []
    assert daemon.events("stopping")


def test_sigkill_then_restart_with_the_same_state_file_repeats_no_action(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    # payments-prod's run hangs on cancel: once cancelled it stays `applying`, so a watchdog
    # that forgot would cancel it again; the cool-off (5 min, frozen clock) blocks escalation.
    config = _enforcing(simulator, tmp_path, interval=0.2)
    first = DaemonProcess(config, ADMIN_TOKEN)
    try:
        first.wait_for(lambda: _posts(simulator), 30, "the first actions")
        first.wait_cycles(2)
        first.process.send_signal(signal.SIGKILL)
        first.wait_exit(10)
    finally:
        first.stop()
    before = [(p["path"]) for p in _posts(simulator)]
    assert before
    with running_daemon(config, ADMIN_TOKEN) as second:
        second.wait_cycles(5)
        after = [p["path"] for p in _posts(simulator)]
    repeated = [path for path in set(after) if after.count(path) > 1]
    assert repeated == [], f"actions repeated after the restart: {repeated}"
