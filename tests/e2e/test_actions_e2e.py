"""The action ladder end to end: the real `tfc-watchdog run` process (daemon or
`--once`) against the real simulator. Assertions are on what reached the server (the
request log: every POST, with its status) and on the daemon's audit events and metrics.

The simulated clock stands still unless a test advances it, so "stale", "young" and
"cool-off" are exact; waits are on conditions (events, reports, cycles), never on sleeps.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    Harness,
    StartSimulator,
    audit,
    demo_scenario,
    enforce,
    locked_by,
    metric,
    metrics_text,
    not_acting,
    post_paths,
    posts,
    report_at,
    scenario,
    sim_now,
    wait_until,
    workspace_id,
)
from tests.support.clock import shift_watchdog_clock
from tests.support.daemon import DaemonProcess
from tests.support.simulator import USER_TOKEN, SimulatorServer

pytestmark = pytest.mark.e2e

HOUR = 3600
ALL_RUNGS = ["cancel", "force_cancel", "discard", "unlock", "force_unlock"]


def stuck_apply(age: str = "7h") -> dict[str, Any]:
    """An apply `age` in `applying` (stuck past the default 6h) that ignores a cancel, and
    a run queued behind it that applies 10 minutes after it starts."""
    return {
        "name": "payments",
        "runs": [
            {"status": "applied", "age": "3d", "by": "alice"},
            {"status": "applying", "age": age, "by": "alice", "hangs_on_cancel": True},
            {"status": "pending", "age": "30m", "by": "bob", "duration": "10m"},
        ],
    }


STUCK_APPLY = stuck_apply()


def current_run(sim: SimulatorServer, name: str) -> dict[str, Any]:
    run: dict[str, Any] = sim.workspace(name)["current_run"]
    return run


# --- 1. dry-run -------------------------------------------------------------------------------


def test_dry_run_on_the_demo_reports_and_previews_every_rung_without_one_post(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    with (
        start_simulator(scenario=demo_scenario()) as sim,
        harness.daemon(sim, defaults={"actions": ALL_RUNGS}) as daemon,
    ):
        report_at(daemon, sim_now(sim))
        daemon.wait_cycles(1)  # a second sighting of every user/team lock
        sim.advance(3 * HOUR)
        report_at(daemon, sim_now(sim))
        daemon.wait_for_event("would force_unlock demo/legacy-network")
        previews = {(e["action"], e["workspace"]) for e in audit(daemon, "dry_run")}
        text = metrics_text(daemon)
        requests = sim.requests()
    assert {
        ("cancel", "payments-prod"),
        ("discard", "billing-staging"),
        ("force_unlock", "legacy-network"),
        ("force_unlock", "analytics-dev"),
    } <= previews
    assert not [p for p in previews if p[1] == "prod-core"]  # protected twice over
    assert {a["outcome"] for a in audit(daemon)} == {"dry_run"}
    assert {e["kind"] for e in daemon.events("finding")} >= {
        "lock_stale",
        "run_stuck",
        "run_waiting",
        "runs_blocked",
    }
    assert metric(text, "tfc_watchdog_actions_total", action="cancel", outcome="dry_run")
    assert metric(text, "tfc_watchdog_dry_run") == 1
    assert [r for r in requests if r["method"] != "GET"] == []


# --- 2. unlock / force-unlock -------------------------------------------------------------------


def test_a_stale_user_lock_is_force_unlocked_exactly_once_after_two_sightings(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    with start_simulator(scenario=scenario([locked_by("bob")])) as sim:
        ws = workspace_id(sim, "stale")
        with harness.daemon(sim, **enforce(["force_unlock"])) as daemon:
            report_at(daemon, sim_now(sim))
            daemon.wait_cycles(2)
            assert posts(sim) == []  # young: seen, not yet older than lock_stale_after
            sim.advance(HOUR + 1)
            done = daemon.wait_for_event("action", outcome="done", action="force_unlock")
            daemon.wait_cycles(3)
        requests = sim.requests()
        state = sim.workspace("stale")
    assert [(r["method"], r["path"], r["status"]) for r in requests if r["method"] != "GET"] == [
        ("POST", f"/api/v2/workspaces/{ws}/actions/force-unlock", 200)
    ]
    before = requests[: requests.index(next(r for r in requests if r["method"] == "POST"))]
    assert sum(1 for r in before if r["path"].endswith("/workspaces")) >= 2
    assert state["locked"] is False
    assert done["holder"] == "user:bob"
    assert done["workspace"] == "stale"
    assert done["rule"] == "defaults"
    assert done["age_seconds"] == HOUR + 1


def test_a_lock_stale_on_its_first_sighting_waits_for_a_second_cycle(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    """A state file restored with an old first-seen time but no sighting (a lock the
    watchdog has not seen itself): stale by age at once, yet one cycle is only a glimpse."""
    config = enforce(["force_unlock"], state_file=harness.state_file)
    with start_simulator(scenario=scenario([locked_by("bob")])) as sim:
        ws = workspace_id(sim, "stale")
        first = harness.once(sim, **config)
        assert first.process.returncode == 0
        state = json.loads(Path(harness.state_file).read_text())
        (entry,) = state["locks"]["tfc"][ws].values()
        entry["first_seen"] = "2026-01-15T09:00:00+00:00"  # 3 h before the simulated now
        entry["sightings"] = 0
        Path(harness.state_file).write_text(json.dumps(state))

        second = harness.once(sim, **config)
        assert second.process.returncode == 0
        assert posts(sim) == []
        (reason,) = not_acting(second, "stale")
        assert "1 cycle(s), 2 needed" in reason

        third = harness.once(sim, **config)
        fourth = harness.once(sim, **config)
        assert post_paths(sim) == [f"/api/v2/workspaces/{ws}/actions/force-unlock"]
    assert [a["outcome"] for a in audit(third)] == ["done"]
    assert audit(fourth) == []


def test_the_watchdogs_own_lock_is_unlocked_not_force_unlocked(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    with start_simulator(scenario=scenario([locked_by("operator", "mine")])) as sim:
        ws = workspace_id(sim, "mine")
        with harness.daemon(sim, USER_TOKEN, **enforce(["unlock", "force_unlock"])) as daemon:
            report_at(daemon, sim_now(sim))
            daemon.wait_cycles(1)
            sim.advance(2 * HOUR)
            daemon.wait_for_event("action", outcome="done", workspace="mine")
            daemon.wait_cycles(2)
        assert post_paths(sim) == [f"/api/v2/workspaces/{ws}/actions/unlock"]
        assert sim.workspace("mine")["locked"] is False
    assert daemon.wait_for_event("identity")["holder"] == "user:operator"


# --- 3. cancel, force-cancel, and the queue moves on ------------------------------------------


def test_a_stuck_apply_is_cancelled_then_force_cancelled_after_the_cool_off(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    with start_simulator(scenario=scenario([STUCK_APPLY], cooloff="5m")) as sim:
        stuck = current_run(sim, "payments")["id"]
        queued = sim.workspace("payments")["queue"][0]
        with harness.daemon(sim, **enforce(["cancel", "force_cancel"])) as daemon:
            daemon.wait_for_event("action", outcome="done", action="cancel")
            # The run ignores the cancel: it stays applying, locked, until the cool-off ends.
            # During the cool-off the API says the run is not force-cancelable yet.
            wait_until(
                lambda: [r for r in not_acting(daemon, "payments") if "would force_cancel" in r],
                "the force-cancel restraint",
            )
            sim.advance(299)
            report_at(daemon, sim_now(sim))
            daemon.wait_cycles(2)
            assert post_paths(sim) == [f"/api/v2/runs/{stuck}/actions/cancel"]
            assert sim.run(stuck)["attributes"]["status"] == "applying"

            sim.advance(1)  # now = force-cancel-available-at
            daemon.wait_for_event("action", outcome="done", action="force_cancel")
            assert post_paths(sim) == [
                f"/api/v2/runs/{stuck}/actions/cancel",
                f"/api/v2/runs/{stuck}/actions/force-cancel",
            ]
            assert sim.run(stuck)["attributes"]["status"] == "force_canceled"
            # The pending run starts at once and holds the workspace while it runs...
            assert current_run(sim, "payments") == {"id": queued, "status": "plan_queued"}
            sim.advance(10 * 60)  # ...and finishes after its 10 minutes
            report_at(daemon, sim_now(sim))
            daemon.wait_cycles(1)
            assert len(posts(sim)) == 2
        final = sim.workspace("payments")
    assert final["current_run"] == {"id": queued, "status": "applied"}
    assert final["locked"] is False


# --- 4. discard --------------------------------------------------------------------------------


def test_a_run_waiting_past_its_threshold_is_discarded(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    waiting = {
        "name": "billing",
        "runs": [{"status": "applied", "age": "5d"}, {"status": "planned", "age": "2d"}],
    }
    with start_simulator(scenario=scenario([waiting])) as sim:
        run = current_run(sim, "billing")["id"]
        with harness.daemon(sim, **enforce(["discard"])) as daemon:
            event = daemon.wait_for_event("action", outcome="done", action="discard")
            daemon.wait_cycles(2)
        assert post_paths(sim) == [f"/api/v2/runs/{run}/actions/discard"]
        final = sim.workspace("billing")
    assert final["current_run"] == {"id": run, "status": "discarded"}
    assert final["locked"] is False
    assert event["run_id"] == run
    assert event["threshold"] == "1d"


# --- 5. restraint --------------------------------------------------------------------------------


def test_young_protected_and_unruled_locks_get_no_post_and_a_reason_each(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    workspaces: list[dict[str, Any]] = [
        {"name": "young"},
        {"name": "guarded", "tags": ["protected"], "lock": {"by": "bob"}},
        locked_by("bob", "maintained", reason="maintenance window"),
        locked_by("bob", "unruled"),
    ]
    config = enforce(
        ["force_unlock"],
        protect={"tags": ["protected"]},
        rules=[{"id": "cancel-only", "match": {"workspaces": ["unruled"]}, "actions": ["cancel"]}],
    )
    with start_simulator(scenario=scenario(workspaces)) as sim:
        with harness.daemon(sim, **config) as daemon:
            report_at(daemon, sim_now(sim))
            daemon.wait_cycles(1)
            sim.advance(2 * HOUR)
            sim.lock("young", "alice", "Locked by Terraform")  # taken just now
            report_at(daemon, sim_now(sim))
            daemon.wait_cycles(2)
        assert posts(sim) == []
    reasons = {
        name: not_acting(daemon, name) for name in ("young", "guarded", "maintained", "unruled")
    }
    assert any(r.startswith("young lock") for r in reasons["young"]), reasons
    assert any("protected" in r and "tag" in r for r in reasons["guarded"]), reasons
    assert any("protected: lock reason" in r for r in reasons["maintained"]), reasons
    assert any("force_unlock not allowed by rule cancel-only" in r for r in reasons["unruled"]), (
        reasons
    )
    assert audit(daemon) == []


# --- 6. the world changes between observe and act, permissions, conflicts --------------------
# Proven with the real client and the real simulator below the daemon: tests/unit/test_act.py
# (`test_real_source_*`, the fresh read, 409, 404, a pending state version, missing
# permissions) and the properties (every POST follows a fresh read that still justifies it).


# --- 7. budgets ------------------------------------------------------------------------------


@pytest.mark.slow  # six one-cycle processes
def test_the_action_budget_holds_per_cycle_and_per_hour_across_restarts(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    workspaces = [locked_by("bob", f"lock-{n}") for n in range(1, 7)]
    config = enforce(
        ["force_unlock"],
        state_file=harness.state_file,
        limits={"max_actions_per_cycle": 2, "max_actions_per_hour": 5},
        # One `run --once` per cycle, as from a scheduler every 3 hours: the hours the
        # simulator's clock is moved between runs are within the allowed observation gap.
        interval="3h",
    )
    with start_simulator(scenario=scenario(workspaces)) as sim:
        counts = []

        def cycle() -> DaemonProcess:
            # `run --once` is exactly one cycle, and every one is a restart on the state file.
            before = len(posts(sim))
            daemon = harness.once(sim, **config)
            assert daemon.process.returncode == 0, "\n".join(daemon.lines[-20:])
            counts.append(len(posts(sim)) - before)
            return daemon

        cycle()  # first sighting: young
        sim.advance(2 * HOUR)
        cycle()
        cycle()
        cycle()
        spent = cycle()
        sim.advance(HOUR + 1)  # the server's clock alone does not free the budget...
        cycle()
        # ...an hour on the watchdog's own clock does (as if the state file were that old).
        shift_watchdog_clock(Path(harness.state_file), -timedelta(hours=1, seconds=1), locks=False)
        cycle()
        paths = post_paths(sim)
        statuses = {r["status"] for r in posts(sim)}
    assert counts == [0, 2, 2, 1, 0, 0, 1]  # five in the first hour, then the sixth
    assert statuses == {200}
    assert all(p.endswith("/actions/force-unlock") for p in paths)
    assert len(set(paths)) == len(paths) == 6
    budget = [a for a in audit(spent) if a["outcome"] == "skipped_budget"]
    assert budget and all("hourly budget spent (5 per hour)" in a["detail"] for a in budget)
