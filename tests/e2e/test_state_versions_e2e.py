"""No force-unlock while the lock holder's state upload is pending, end to end: the real
daemon against the real simulator, asserting on what reached the server.

A Terraform process that holds a lock creates a state version (pending) and then uploads
its state (finalized). A force-unlock in between can lose that upload, so the watchdog asks
`GET /state-versions?filter[status]=pending` right before it would unlock, and a check it
cannot make is a no.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.e2e.conftest import (
    Harness,
    StartSimulator,
    audit,
    metric,
    metrics_text,
    posts,
    report_at,
    scenario,
    sim_now,
    workspace_id,
)
from tests.support.daemon import DaemonProcess
from tests.support.simulator import USER_TOKEN, SimulatorServer

pytestmark = pytest.mark.e2e

HOUR = 3600
CONFIG = {"dry_run": False, "defaults": {"lock_stale_after": "1h", "actions": ["force_unlock"]}}
STALE = {"name": "stale", "lock": {"by": "bob", "reason": "Locked by Terraform"}}


def state_version_checks(requests: list[dict[str, object]]) -> list[dict[str, list[str]]]:
    return [
        parse_qs(str(r["query"]))
        for r in requests
        if r["method"] == "GET" and r["path"] == "/api/v2/state-versions"
    ]


def first_failed_force_unlock(sim: SimulatorServer, daemon: DaemonProcess) -> dict[str, Any]:
    """The lock seen twice, then past its hour: the audit event of the first force-unlock that
    failed, returned after two more cycles (in which it may be retried)."""
    report_at(daemon, sim_now(sim))
    daemon.wait_cycles(1)
    sim.advance(HOUR + 1)
    failed = daemon.wait_for_event("action", action="force_unlock", outcome="failed")
    daemon.wait_cycles(2)
    return failed


def test_a_pending_state_version_holds_the_force_unlock_until_it_is_finalized(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    with start_simulator(scenario=scenario([STALE])) as sim:
        ws = workspace_id(sim, "stale")
        version = sim.add_state_version("stale", USER_TOKEN)
        with harness.daemon(sim, **CONFIG) as daemon:
            held = first_failed_force_unlock(sim, daemon)
            assert posts(sim) == []
            assert sim.workspace("stale")["locked"] is True
            sim.finalize_state_version(version["id"])
            daemon.wait_for_event("action", action="force_unlock", outcome="done")
            daemon.wait_cycles(2)
            text = metrics_text(daemon)
        requests = sim.requests()
        sent = [(r["path"], r["status"]) for r in posts(sim)]
    assert "state upload pending" in held["detail"]
    assert held["retry_later"] is True
    assert sent == [(f"/api/v2/workspaces/{ws}/actions/force-unlock", 200)]
    checks = state_version_checks(requests)
    assert checks[0] == {
        "filter[workspace][name]": ["stale"],
        "filter[organization][name]": ["demo"],
        "filter[status]": ["pending"],
    }
    # One check per attempt, never more than the attempts (only before an unlock).
    assert len(checks) == len(audit(daemon))
    # Time to clear: observed once, ours, at the age the lock had when it was force-unlocked
    # (the simulated clock stood still after the advance).
    clear = "tfc_watchdog_lock_age_at_clear_seconds"
    assert metric(text, f"{clear}_count", source="tfc", cleared_by="watchdog") == 1
    assert metric(text, f"{clear}_sum", source="tfc", cleared_by="watchdog") == HOUR + 1
    assert metric(text, f"{clear}_count", source="tfc", cleared_by="other") == 0


@pytest.mark.parametrize(
    ("kind", "status"), [("status", 404), ("malformed", 200)], ids=["404", "unreadable"]
)
def test_a_state_version_check_that_fails_sends_no_force_unlock(
    start_simulator: StartSimulator, harness: Harness, kind: str, status: int
) -> None:
    with start_simulator(scenario=scenario([STALE])) as sim:
        sim.inject_fault(kind, r"^/api/v2/state-versions$", method="GET", status=status)
        with harness.daemon(sim, **CONFIG) as daemon:
            failed = first_failed_force_unlock(sim, daemon)
        sent = posts(sim)
        locked = sim.workspace("stale")["locked"]
    assert sent == []
    assert locked is True
    assert failed["detail"].startswith("pending state versions could not be checked")
