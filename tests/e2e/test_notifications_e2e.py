"""Notifications end to end: the real daemon against the real simulator, sending through the
real apprise to a local HTTP receiver. Assertions are on what reached the receiver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Harness, StartSimulator, scenario, wait_until
from tests.support.daemon import running_daemon, write_config
from tests.support.receiver import receiver
from tests.support.simulator import ADMIN_TOKEN

pytestmark = pytest.mark.e2e

HOUR = 3600


def locked_by_bob() -> dict[str, Any]:
    return {"name": "stale", "lock": {"by": "bob", "reason": "Locked by Terraform"}}


def test_one_stale_message_across_cycles_then_the_action_then_cleared(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    with receiver() as inbox, start_simulator(scenario=scenario([locked_by_bob()])) as sim:
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
    with receiver() as inbox, start_simulator(scenario=scenario([locked_by_bob()])) as sim:
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
