"""Signs of life end to end: the real daemon against the real simulator. A state version
created while a user's lock is held (an intermediate snapshot of a long CLI apply) moves the
workspace's `latest-change-at`; the lock's age restarts from it, so it is not force-unlocked
until it has been quiet for `lock_stale_after`."""

from __future__ import annotations

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
from tests.support.simulator import USER_TOKEN

pytestmark = pytest.mark.e2e

MINUTE = 60
CONFIG = {"dry_run": False, "defaults": {"lock_stale_after": "1h", "actions": ["force_unlock"]}}


def test_a_lock_with_a_recent_state_upload_is_spared_until_it_is_quiet(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    lock = {"name": "long-apply", "lock": {"by": "bob", "reason": "Locked by Terraform"}}
    with start_simulator(scenario=scenario([lock])) as sim:
        ws = workspace_id(sim, "long-apply")
        with harness.daemon(sim, **CONFIG) as daemon:
            report_at(daemon, sim_now(sim))
            sim.advance(50 * MINUTE)
            report_at(daemon, sim_now(sim))
            sim.add_state_version("long-apply", USER_TOKEN, finalized=True)  # a snapshot
            activity = sim_now(sim)
            sim.advance(20 * MINUTE)  # 70 minutes held, 20 quiet
            document = report_at(daemon, sim_now(sim))
            daemon.wait_cycles(2)
            assert posts(sim) == []
            text = metrics_text(daemon)
            sim.advance(41 * MINUTE)  # 61 minutes quiet
            daemon.wait_for_event("action", action="force_unlock", outcome="done")
        sent = [r["path"] for r in posts(sim)]
    [held] = document["locks"]
    assert held["last_activity"] == activity.isoformat().replace("+00:00", "Z")
    assert held["age_seconds"] == 20 * MINUTE
    assert held["stale"] is False
    gauge = metric(
        text, "tfc_watchdog_lock_last_activity_timestamp_seconds", workspace="long-apply"
    )
    assert gauge == activity.timestamp()
    assert sent == [f"/api/v2/workspaces/{ws}/actions/force-unlock"]
