"""The real daemon against the simulator on a bad day: faults, signals, a crash and a restart.

The daemon enforces (dry_run false) with rungs allowed, so that every "no POST" below is a
decision, not an accident of configuration.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs installed
import pytest

from tests.e2e.conftest import scenario
from tests.support.daemon import DaemonProcess, base_config, running_daemon, write_config
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer

pytestmark = pytest.mark.e2e

# 50 cycles in `make test`; `make soak` runs 200 (FAULT_SOAK_CYCLES).
CYCLES_UNDER_FAULTS = int(os.environ.get("FAULT_SOAK_CYCLES", "50"))
# Memory is compared between this cycle and the last: the first cycles warm caches up.
WARM_CYCLES = max(10, CYCLES_UNDER_FAULTS // 4)
# Faults on the organization's list page, each per request: every kind a server or a proxy
# can answer with. The kinds the client retries (5xx, 429, timeouts, dropped and truncated
# bodies) are rarer so that the cycles fit the suite's time budget.
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
# An apply seven hours in `applying`: stuck past the default threshold (6h) at once.
STUCK_APPLY: dict[str, Any] = {
    "name": "payments",
    "runs": [{"status": "applying", "age": "7h", "by": "alice"}],
}
# Every re-read of one workspace fails: the watchdog plans actions but can never verify them.
REREAD_PATH = r"^/api/v2/workspaces/[^/]+$"


def _enforcing(
    simulator: SimulatorServer, tmp_path: Path, *, timeout: float = 0.3, **overrides: Any
) -> Path:
    settings: dict[str, Any] = {
        "dry_run": False,
        "interval": 0.1,
        "state_file": str(tmp_path / "state.json"),
        "limits": {"max_actions_per_cycle": 5, "max_actions_per_hour": 100},
        "defaults": {"actions": ["cancel", "force_cancel", "discard", "force_unlock"]},
    }
    config = base_config(simulator.url, **{**settings, **overrides})
    config["log"] = {"format": "json", "level": "info"}
    config["tfc"]["timeout"] = timeout
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


def test_cycles_of_faults_no_crash_no_unverified_action_and_recovery(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    for fault in LIST_FAULTS:
        simulator.inject_fault(path=LIST_PATH, method="GET", **fault)
    simulator.inject_fault("malformed", REREAD_PATH, method="GET")
    config = _enforcing(simulator, tmp_path)
    with running_daemon(config, ADMIN_TOKEN, ready=False) as daemon:
        daemon.wait_for(
            lambda: daemon.cycles_completed() >= WARM_CYCLES, 60, f"{WARM_CYCLES} cycles"
        )
        rss_warm = _rss(daemon)
        daemon.wait_for(
            lambda: daemon.cycles_completed() >= CYCLES_UNDER_FAULTS,
            max(90.0, CYCLES_UNDER_FAULTS * 1.0),  # a guard against hanging
            f"{CYCLES_UNDER_FAULTS} cycles",
        )
        rss_end = _rss(daemon)
        assert daemon.process.poll() is None
        assert _posts(simulator) == [], "a POST was sent although no re-read succeeded"
        assert _metric(daemon, "tfc_watchdog_observe_errors_total") > 0
        assert _metric(daemon, "tfc_watchdog_cycle_failures_total") > 0
        assert _metric(daemon, "tfc_watchdog_actions_total") > 0  # it did plan, and held back
        fired = sum(f["fired"] for f in simulator.faults())
        assert fired >= CYCLES_UNDER_FAULTS
        assert not daemon.events("cycle_failed"), "a fault turned into an exception"
        assert rss_end <= rss_warm * 1.10, (rss_warm, rss_end)

        simulator.clear_faults()
        cleared_at = time.time()
        done = daemon.cycles_completed()
        # The first cycle that starts after the faults stop succeeds and acts.
        daemon.wait_for(lambda: daemon.cycles_completed() >= done + 2, 30, "two more cycles")
        assert _metric(daemon, "tfc_watchdog_last_success_timestamp_seconds") >= cleared_at
        assert daemon.get("/readyz").status_code == 200
        daemon.wait_for(lambda: _posts(simulator), 10, "the first action after recovery")
        print(
            f"faults: {daemon.cycles_completed()} cycles, {fired} faults fired, rss at cycle "
            f"{WARM_CYCLES} {rss_warm / 2**20:.1f} MiB, at {CYCLES_UNDER_FAULTS} "
            f"{rss_end / 2**20:.1f} MiB"
        )
    assert daemon.process.returncode == 0


def test_sigterm_during_a_cycle_sends_no_further_post_and_exits_0(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    # The re-read before the first action takes 1.5 s (within the timeout: answered, not
    # retried): SIGTERM arrives inside the cycle, and the POSTs that read justifies are not sent.
    simulator.inject_fault("latency", REREAD_PATH, method="GET", latency_ms=1500)
    config = _enforcing(simulator, tmp_path, interval=60, timeout=5)
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
    start_simulator: Callable[..., Any], tmp_path: Path
) -> None:
    # A stuck apply whose cancel the API refuses with 409: the run stays as it was, so every
    # fresh read justifies the cancel again, and nothing on the server remembers it was sent
    # (no `canceled-at`). Only the state file does: the one cancel the hourly budget allows
    # is recorded there before it is sent, so a restart after SIGKILL sends it no more.
    with start_simulator(scenario=scenario([STUCK_APPLY])) as sim:
        sim.inject_fault("status", r"/actions/cancel$", method="POST", status=409)
        config = _enforcing(
            sim,
            tmp_path,
            interval=0.2,
            defaults={"actions": ["cancel"]},
            limits={"max_actions_per_cycle": 5, "max_actions_per_hour": 1},
        )
        first = DaemonProcess(config, ADMIN_TOKEN)
        try:
            first.wait_for(lambda: _posts(sim), 30, "the cancel")
            first.wait_for_event("action", outcome="skipped_budget")  # the budget holds it back
            first.process.send_signal(signal.SIGKILL)
            first.wait_exit(10)
        finally:
            first.stop()
        assert len(_posts(sim)) == 1

        with running_daemon(config, ADMIN_TOKEN) as second:
            second.wait_cycles(5)
            held_back = second.events("action")
        assert len(_posts(sim)) == 1, "the cancel was sent again after the restart"
        assert held_back and {e["outcome"] for e in held_back} == {"skipped_budget"}

        # The control: the same restart without the state file sends the cancel again, so
        # the state file's memory is what held it back above.
        Path(tmp_path / "state.json").unlink()
        with running_daemon(config, ADMIN_TOKEN) as forgetful:
            forgetful.wait_for(lambda: len(_posts(sim)) == 2, 30, "the cancel sent again")
        sent = [(p["path"].rsplit("/", 1)[-1], p["status"]) for p in _posts(sim)]
    assert sent == [("cancel", 409), ("cancel", 409)]
