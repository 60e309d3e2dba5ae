"""Two-tier polling end to end: the real daemon against the real simulator, asserting on
what reached the server. After the first full walk (the next is an hour away), each cycle
sends one filtered list request; a run that gets stuck meanwhile is still cancelled within
a cycle, while a user lock, whose sightings only full walks count, is left alone however
stale it looks."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.e2e.conftest import (
    Harness,
    StartSimulator,
    metric,
    metrics_text,
    not_acting,
    post_paths,
    scenario,
    wait_until,
)
from watchdog.model import NON_FINAL_STATUSES

pytestmark = pytest.mark.e2e

FILTER = "filter[current-run][status]"
HOUR = 3600


def _lists(requests: list[dict[str, Any]]) -> list[str | None]:
    """The run-status filter of each workspace-list request, in order (None: a full walk)."""
    return [
        parse_qs(r["query"]).get(FILTER, [None])[0]
        for r in requests
        if r["method"] == "GET" and r["path"].endswith("/workspaces")
    ]


def test_between_full_walks_a_stuck_run_is_cancelled_and_a_user_lock_is_not_sighted(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    workspaces = [
        {"name": "held", "lock": {"by": "alice", "reason": "Locked by Terraform", "age": "3h"}},
        {"name": "quiet"},
    ]
    with start_simulator(scenario=scenario(workspaces)) as sim:
        tfc = {
            "address": sim.url,
            "organizations": ["demo"],
            "timeout": "5s",
            "full_scan_interval": "1h",
        }
        config = {
            "dry_run": False,
            "tfc": tfc,
            "defaults": {"lock_stale_after": "1h", "actions": ["cancel", "force_unlock"]},
        }
        with harness.daemon(sim, **config) as daemon:
            # The first cycle walks every workspace; then only filtered lists.
            wait_until(lambda: len(_lists(sim.requests())) >= 3, "three cycles")
            lists = _lists(sim.requests())
            assert lists[0] is None
            assert set(lists[1:]) == {",".join(NON_FINAL_STATUSES)}

            # A run stuck applying for 7 h appears between full walks: cancelled at once.
            run = sim.start_run("quiet", "applying", principal="bob", age=7 * HOUR)
            cancel = f"/api/v2/runs/{run}/actions/cancel"
            wait_until(lambda: cancel in post_paths(sim), "the stuck run cancelled")

            # The user lock was seen by one full walk: the fast cycles never count a second
            # sighting, so it is not force-unlocked, however old it is.
            sim.advance(3 * HOUR)
            cycles_then = len(_lists(sim.requests()))
            wait_until(lambda: len(_lists(sim.requests())) >= cycles_then + 3, "3 more cycles")
            assert not any("/actions/force-unlock" in path for path in post_paths(sim))
            assert any("1 cycle(s), 2 needed" in reason for reason in not_acting(daemon, "held"))
            assert None not in _lists(sim.requests())[1:]  # still no second full walk
            text = metrics_text(daemon)
            assert metric(text, "tfc_watchdog_fast_path_disabled", organization="demo") == 0
            assert (metric(text, "tfc_watchdog_read_requests_total", kind="fast") or 0) >= 4
            assert metric(text, "tfc_watchdog_read_requests_total", kind="full") == 1
            # The lock is still reported (carried from the full walk), as stale.
            assert (
                metric(
                    text,
                    "tfc_watchdog_lock_stale",
                    workspace="held",
                    holder_type="user",
                )
                == 1
            )
