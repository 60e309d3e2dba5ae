"""The real daemon against the real simulator when the workspace list lies: a list whose
pages are not one list is an incomplete read, on which nothing is done and nothing forgotten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    Harness,
    StartSimulator,
    metric,
    metrics_text,
    posts,
    report_at,
    scenario,
    sim_now,
    workspace_id,
)
from tests.support.simulator import SimulatorServer

pytestmark = pytest.mark.e2e

HOUR = 3600
LIST_PATH = r"^/api/v2/organizations/[^/]+/workspaces$"
# 150 workspaces are two pages of 100; bob holds one lock on each page.
ON_PAGE_ONE, ON_PAGE_TWO = "w-005", "w-120"


def _workspaces() -> list[dict[str, Any]]:
    workspaces: list[dict[str, Any]] = [{"name": f"w-{n:03d}"} for n in range(150)]
    for name in (ON_PAGE_ONE, ON_PAGE_TWO):
        workspaces[int(name[2:])] = {"name": name, "lock": {"by": "bob", "reason": "apply"}}
    return workspaces


def _page_one_names(sim: SimulatorServer) -> set[str]:
    with sim.client() as api:
        document = api.get(
            "organizations/demo/workspaces", params={"page[number]": "1", "page[size]": "100"}
        ).json()
    return {entry["attributes"]["name"] for entry in document["data"]}


def _remembered(state_file: str) -> dict[str, Any]:
    """workspace id -> what the state file remembers of its (one) lock."""
    document = json.loads(Path(state_file).read_text())
    tfc: dict[str, dict[str, Any]] = document["locks"].get("tfc", {})
    return {ws: next(iter(holders.values())) for ws, holders in tfc.items()}


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("repeat_page", "two pages"),
        # The simulator has two real pages: the endless list stops at its first empty page.
        ("endless_pages", "names a next page"),
        ("absurd_total", "promises 1000000000 items"),
        ("deep_json", "body is not JSON"),
    ],
)
def test_lying_lists_are_incomplete_reads_no_action_ages_kept_bounded_in_requests(
    start_simulator: StartSimulator, harness: Harness, kind: str, says: str
) -> None:
    with start_simulator(scenario=scenario(_workspaces())) as sim:
        pages = _page_one_names(sim)
        assert ON_PAGE_ONE in pages
        assert ON_PAGE_TWO not in pages
        locks = {workspace_id(sim, ON_PAGE_ONE), workspace_id(sim, ON_PAGE_TWO)}
        with harness.daemon(
            sim,
            dry_run=False,
            state_file=harness.state_file,
            defaults={"lock_stale_after": "1h", "actions": ["force_unlock"]},
            # Requests are counted per cycle: half a second apart keeps the cycles few.
            interval=0.5,
        ) as daemon:
            # Both locks seen twice, whole, at the frozen start: young, nothing to do.
            report_at(daemon, sim_now(sim))
            daemon.wait_cycles(1)
            before = _remembered(harness.state_file)
            assert set(before) == locks
            # The fault first, then the clock: once the locks are stale no list is read whole
            # (a clean read in between would rightly be acted on).
            sim.inject_fault(kind, LIST_PATH)
            daemon.wait_cycles(1)  # a cycle that may have begun before the fault
            sim.advance(2 * HOUR)  # both locks would be stale if read whole
            daemon.wait_cycles(1)
            done = daemon.cycles_completed()
            listed = len(sim.requests())
            daemon.wait_cycles(1)
            document = report_at(daemon, sim_now(sim))
            pages = sum(1 for r in sim.requests()[listed:] if r["path"].endswith("/workspaces"))
            # The cycles those requests belong to: those completed meanwhile, and one under
            # way at each end (a loaded machine polls slowly).
            cycles = daemon.cycles_completed() - done + 2
            after = _remembered(harness.state_file)
            text = metrics_text(daemon)
        sent = posts(sim)

    assert sent == []
    [source] = document["sources"]
    assert source["complete"] is False
    assert says in (source["error"] or ""), source
    assert document["complete"] is False
    assert metric(text, "tfc_watchdog_observe_errors_total", source="tfc", reason="bad_response")
    # Requests per cycle stay those of a real list (the endless one stops at page 3).
    assert pages <= 3 * cycles, (pages, cycles)
    # Nothing forgotten, no age restarted: the lock on page 2 was not seen, not released.
    assert set(after) == locks
    assert {ws: entry["first_seen"] for ws, entry in after.items()} == {
        ws: entry["first_seen"] for ws, entry in before.items()
    }
