"""Notifications end to end: the real daemon against the real simulator, sending through the
real apprise to a local HTTP receiver. Assertions are on what reached the receiver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import (
    Harness,
    StartSimulator,
    locked_by,
    locks_by_workspace,
    post_paths,
    scenario,
    wait_until,
    workspace_id,
)
from tests.support.daemon import running_daemon, write_config
from tests.support.receiver import receiver
from tests.support.simulator import ADMIN_TOKEN

pytestmark = pytest.mark.e2e

HOUR = 3600


def test_one_stale_message_across_cycles_then_the_action_then_cleared(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    with receiver() as inbox, start_simulator(scenario=scenario([locked_by("bob")])) as sim:
        path = harness.config(
            sim,
            dry_run=False,
            state_file=harness.state_file,
            # Report only at first: the lock is stale for a while before the watchdog may act.
            defaults={"lock_stale_after": "1h", "actions": []},
            notifications=[{"id": "oncall", "urls": [inbox.json_url()]}],
        )
        with running_daemon(path, ADMIN_TOKEN) as daemon:
            daemon.wait_cycles(2)
            sim.advance(HOUR + 1)
            wait_until(lambda: inbox.received, "the first message")
            daemon.wait_cycles(5)
            stale_only = inbox.titles()
            # Let it act: the daemon re-reads the edited file before its next cycle.
            config = yaml.safe_load(Path(path).read_text())
            config["defaults"]["actions"] = ["force_unlock"]
            write_config(Path(path), config)
            daemon.wait_for_event("action", outcome="done", action="force_unlock")
            wait_until(lambda: len(inbox.received) >= 3, "the action and cleared messages")
            daemon.wait_cycles(3)
            metrics = daemon.get("/metrics").text
        titles = inbox.titles()
    assert stale_only == ["Stale lock on demo/stale: user:bob, 1h00m"]
    assert titles == [
        "Stale lock on demo/stale: user:bob, 1h00m",
        "force_unlock demo/stale: done",
        "Cleared: stale lock on demo/stale (user:bob)",
    ]
    for event in ("lock_stale", "action", "cleared"):
        series = f'{{event="{event}",outcome="sent",target="oncall"}} 1.0'
        assert f"tfc_watchdog_notifications_total{series}" in metrics


def test_a_hanging_receiver_does_not_stop_the_cycles(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    with receiver() as inbox, start_simulator(scenario=scenario([locked_by("bob")])) as sim:
        inbox.mode = "hang"  # answers nothing until the test ends
        path = harness.config(
            sim,
            defaults={"lock_stale_after": "1h"},
            notifications=[{"id": "oncall", "urls": [inbox.json_url()], "timeout": "1s"}],
        )
        with running_daemon(path, ADMIN_TOKEN) as daemon:
            daemon.wait_cycles(2)
            sim.advance(HOUR + 1)
            wait_until(lambda: inbox.received, "a message to reach the receiver")
            # Cycles go on while the receiver holds the request (each waits 1s + 1s grace).
            daemon.wait_cycles(2)
            held = inbox.in_flight
            failures = daemon.events("notification_not_sent")
    assert held >= 1
    assert failures and {e["outcome"] for e in failures} == {"timeout"}


def notice_config(harness: Harness, sim: Any, inbox: Any) -> Path:
    return harness.config(
        sim,
        dry_run=False,
        state_file=harness.state_file,
        defaults={"lock_stale_after": "1h", "actions": ["force_unlock"], "notice": "30m"},
        notifications=[{"id": "oncall", "urls": [inbox.json_url()]}],
    )


def about(titles: list[str], workspace: str) -> list[str]:
    return [title for title in titles if f"demo/{workspace}" in title]


def test_a_notice_then_the_action_after_it_and_a_release_during_it_is_not_acted_on(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    """Two of bob's locks, stale: a stale and a notice message each. `stale` stays held: it is
    force-unlocked once the notice period is over, then cleared. `released` is released
    during the notice period (cleared) and locked again by alice: a new lock with a new age,
    on which nothing is done or said."""
    locks = [locked_by("bob"), locked_by("bob", name="released")]
    with receiver() as inbox, start_simulator(scenario=scenario(locks)) as sim:
        stale_id = workspace_id(sim, "stale")
        path = notice_config(harness, sim, inbox)
        with running_daemon(path, ADMIN_TOKEN) as daemon:
            daemon.wait_cycles(2)
            sim.advance(HOUR + 1)
            wait_until(lambda: len(inbox.received) >= 4, "two stale and two notice messages")
            sim.unlock("released")  # bob is done there
            wait_until(lambda: len(inbox.received) >= 5, "the cleared message")
            sim.lock("released", "alice", reason="Locked by Terraform")  # a new lock, a new age
            daemon.wait_cycles(5)
            before = inbox.titles()
            posts_before = post_paths(sim)
            action_at = locks_by_workspace(daemon.get("/locks").json())["stale"]["action_at"]
            sim.advance(30 * 60)
            daemon.wait_for_event("action", outcome="done", action="force_unlock")
            wait_until(lambda: len(inbox.received) >= 7, "the action and cleared messages")
            daemon.wait_cycles(4)
        titles = inbox.titles()
        sent = post_paths(sim)
    # Nothing before the notice period is over, and each message once.
    assert posts_before == []
    assert action_at is not None
    assert about(before, "stale") == [
        "Stale lock on demo/stale: user:bob, 1h00m",
        f"Notice: force-unlock demo/stale at {action_at[:10]} {action_at[11:16]} UTC unless "
        "it is released",
    ]
    # The held lock: the action after the notice period, then cleared.
    assert about(titles, "stale")[2:] == [
        "force_unlock demo/stale: done",
        "Cleared: stale lock on demo/stale (user:bob)",
    ]
    assert sent == [f"/api/v2/workspaces/{stale_id}/actions/force-unlock"]
    # The released lock: cleared, not acted on; alice's lock is young: nothing to say.
    assert about(titles, "released")[2:] == ["Cleared: stale lock on demo/released (user:bob)"]
    assert [e for e in daemon.events("action") if e["workspace"] == "released"] == []
    assert not any("alice" in title for title in titles)


def stuck_apply() -> dict[str, Any]:
    """A run applying for 7 h (stuck past the default 6 h): it holds the workspace's lock."""
    return {
        "name": "payments",
        "runs": [
            {"status": "applied", "age": "3d", "by": "alice"},
            {"status": "applying", "age": "7h", "by": "alice"},
        ],
    }


@pytest.mark.parametrize(
    ("mode", "overrides"),
    [
        ("enforce", {"dry_run": False}),
        ("dry-run", {"dry_run": True}),
        ("no-budget", {"dry_run": False, "limits": {"max_actions_per_hour": 0}}),
    ],
)
def test_a_notice_on_a_run_held_lock_is_also_a_run_comment_once(
    start_simulator: StartSimulator, harness: Harness, mode: str, overrides: dict[str, Any]
) -> None:
    with start_simulator(scenario=scenario([stuck_apply()])) as sim:
        run_id = sim.workspace("payments")["current_run"]["id"]
        with harness.daemon(
            sim,
            state_file=harness.state_file,
            defaults={"actions": ["cancel"], "notice": "30m"},
            **overrides,
        ) as daemon:
            daemon.wait_for_event("not_acting")
            daemon.wait_cycles(3)
            during = [(r["method"], r["path"], r["status"]) for r in sim.requests()]
            comments = sim.run(run_id)["comments"]
            sim.advance(30 * 60 + 1)
            if mode == "dry-run":
                daemon.wait_for_event("would cancel demo/payments", outcome="dry_run")
            else:
                outcome = "done" if mode == "enforce" else "skipped_budget"
                daemon.wait_for_event("action", outcome=outcome)
        posts = [r["path"] for r in sim.requests() if r["method"] == "POST"]
    sent = [entry for entry in during if entry[0] == "POST"]
    if mode != "enforce":
        assert sent == [] and comments == [] and posts == []
        expected = f"would comment on run {run_id}" if mode == "dry-run" else "run_comment"
        assert daemon.events(expected)
        return
    assert sent == [("POST", f"/api/v2/runs/{run_id}/comments", 201)]
    [comment] = comments
    assert comment.startswith("tfc-watchdog notice: cancel at ")
    assert posts == [f"/api/v2/runs/{run_id}/comments", f"/api/v2/runs/{run_id}/actions/cancel"]
