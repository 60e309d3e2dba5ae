"""Config hot reload, end to end: the real daemon process against the simulator.

The simulator's clock stands still (only `advance()` moves it), so lock ages are exact: the
demo scenario's user/team locks are first seen by the daemon's first cycle, and their age is
whatever the test advanced since. The demo's `legacy-network` (a user lock of bob's) is the
lock whose rule the edits change.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.daemon import (
    DaemonProcess,
    base_config,
    free_port,
    running_daemon,
    write_config,
)
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer

pytestmark = pytest.mark.e2e

WORKSPACE = "legacy-network"
# A rule that makes legacy-network stale after 30 minutes (the default is 2h).
FAST_RULE = {
    "id": "legacy-fast",
    "match": {"workspaces": ["legacy-*"]},
    "lock_stale_after": "30m",
}


def locks(daemon: DaemonProcess) -> dict[str, dict[str, Any]]:
    response = daemon.get("/locks")
    if response.status_code != 200:
        return {}
    return {lock["workspace"]: lock for lock in response.json().get("locks", [])}


def metric(daemon: DaemonProcess, name: str) -> float | None:
    """The value of an unlabelled sample (None while the daemon does not export it or does
    not answer yet)."""
    try:
        text = daemon.get("/metrics").text
    except httpx.TransportError:
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            return float(parts[1])
    return None


def wait_lock(daemon: DaemonProcess, what: str, **fields: Any) -> dict[str, Any]:
    """Wait until /locks shows the legacy-network lock with these field values."""

    def match() -> dict[str, Any] | None:
        lock = locks(daemon).get(WORKSPACE)
        if lock is not None and all(lock.get(k) == v for k, v in fields.items()):
            return lock
        return None

    found: dict[str, Any] = daemon.wait_for(match, timeout=30, what=what)
    return found


def first_seen_lock(
    daemon: DaemonProcess, simulator: SimulatorServer, rule: str = "defaults"
) -> dict[str, Any]:
    """Wait for the first sighting, then age the lock by 40 minutes of simulated time."""
    first = wait_lock(daemon, "the first sighting of the lock", rule=rule)
    assert first["age_source"] == "first_seen"
    simulator.advance(40 * 60)
    return wait_lock(daemon, "the lock to be 40m old", age_seconds=first["age_seconds"] + 2400)


def test_file_edit_takes_effect_on_the_next_cycle_and_keeps_first_seen_ages(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = base_config(simulator.url)
    path = write_config(tmp_path / "config.yaml", config)
    with running_daemon(path, ADMIN_TOKEN) as daemon:
        before = first_seen_lock(daemon, simulator)
        assert before["stale"] is False
        loaded_at = metric(daemon, "tfc_watchdog_config_last_reload_success_timestamp_seconds")
        assert loaded_at is not None

        write_config(path, {**config, "rules": [FAST_RULE]})

        after = wait_lock(daemon, "the new rule to apply", rule="legacy-fast")
        assert after["stale"] is True
        # The reload kept the memory: same first sighting, so the same age.
        assert after["since"] == before["since"]
        assert after["age_seconds"] == before["age_seconds"]
        event = daemon.wait_for_event("config_reloaded")
        assert "rules" in event["changed"]
        assert not daemon.events("config_change_needs_restart")
        reloaded_at = metric(daemon, "tfc_watchdog_config_last_reload_success_timestamp_seconds")
        assert reloaded_at is not None and reloaded_at >= loaded_at
        assert metric(daemon, "tfc_watchdog_config_reload_failures_total") == 0
        stale_series = [
            line
            for line in daemon.get("/metrics").text.splitlines()
            if line.startswith("tfc_watchdog_lock_stale{") and f'workspace="{WORKSPACE}"' in line
        ]
        assert len(stale_series) == 1
        assert 'rule="legacy-fast"' in stale_series[0]
        assert stale_series[0].endswith(" 1.0")


def test_invalid_edit_is_rejected_and_the_old_policy_keeps_running(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = base_config(simulator.url, rules=[FAST_RULE])
    path = write_config(tmp_path / "config.yaml", config)
    with running_daemon(path, ADMIN_TOKEN) as daemon:
        before = first_seen_lock(daemon, simulator, rule="legacy-fast")
        assert before["stale"] is True

        path.write_text(
            path.read_text()
            + "defaults:\n  lock_stale_after: -5m\n"
            + "limits: {max_actions_per_cycle: lots}\n"
        )

        event = daemon.wait_for_event("config_reload_rejected")
        errors = event["errors"]
        assert len(errors) == 2
        assert all("\n" not in line and line.startswith(f"{path}:") for line in errors)
        assert any("defaults.lock_stale_after" in line for line in errors)
        assert any("limits.max_actions_per_cycle" in line for line in errors)
        daemon.wait_for(
            lambda: metric(daemon, "tfc_watchdog_config_reload_failures_total") == 1,
            what="the reload failure to be counted",
        )
        # Cycles go on under the old policy, with the same first sighting.
        daemon.wait_cycles(3)
        simulator.advance(60)
        lock = wait_lock(
            daemon, "a cycle after the rejection", age_seconds=before["age_seconds"] + 60
        )
        assert lock["rule"] == "legacy-fast" and lock["since"] == before["since"]
        assert daemon.get("/readyz").status_code == 200
        # One bad file is reported once, not every cycle.
        assert len(daemon.events("config_reload_rejected")) == 1

        # Reverting the bad edit is a successful load again, visible in log and metrics.
        loaded_at = metric(daemon, "tfc_watchdog_config_last_reload_success_timestamp_seconds")
        write_config(path, config)
        assert daemon.wait_for_event("config_reloaded")["changed"] == []
        reloaded_at = metric(daemon, "tfc_watchdog_config_last_reload_success_timestamp_seconds")
        assert loaded_at is not None and reloaded_at is not None and reloaded_at > loaded_at

        # Fixing the file reloads it (here: a stricter default, legacy-fast removed).
        write_config(path, {**config, "rules": []})
        wait_lock(daemon, "the fixed file to apply", rule="defaults", stale=False)
        assert metric(daemon, "tfc_watchdog_config_reload_failures_total") == 1


def test_sighup_reloads_without_waiting_for_a_cycle(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    # An hour between cycles: only the first cycle runs by itself, so whatever happens next
    # is SIGHUP's doing.
    config = base_config(simulator.url, interval="1h")
    path = write_config(tmp_path / "config.yaml", config)
    with running_daemon(path, ADMIN_TOKEN) as daemon:
        wait_lock(daemon, "the first cycle", rule="defaults")
        write_config(path, {**config, "interval": "1s", "rules": [FAST_RULE]})
        daemon.process.send_signal(signal.SIGHUP)

        event = daemon.wait_for_event("config_reloaded")
        assert {"interval", "rules"} <= set(event["changed"])
        daemon.wait_for_event("reload_requested", signal="SIGHUP")
        # The new 1s interval was scheduled: cycles run again, under the new rule.
        wait_lock(daemon, "a cycle under the new rule", rule="legacy-fast")


def test_sighup_with_an_unchanged_file_keeps_everything(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "config.yaml", base_config(simulator.url))
    with running_daemon(path, ADMIN_TOKEN) as daemon:
        before = wait_lock(daemon, "the first cycle", rule="defaults")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_event("reload_requested", signal="SIGHUP")
        daemon.wait_cycles(2)
        assert not daemon.events("config_reload_rejected")
        assert not daemon.events("config_change_needs_restart")
        assert wait_lock(daemon, "a later cycle", rule="defaults")["since"] == before["since"]


def test_listen_and_state_file_changes_are_reported_and_exported_as_needing_a_restart(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    config = base_config(simulator.url, state_file=str(state))
    path = write_config(tmp_path / "config.yaml", config)
    with running_daemon(path, ADMIN_TOKEN) as daemon:
        wait_lock(daemon, "the first cycle", rule="defaults")
        assert metric(daemon, "tfc_watchdog_config_restart_required") == 0
        moved_state = tmp_path / "elsewhere.json"
        write_config(
            path,
            {
                **config,
                "listen": f"127.0.0.1:{free_port()}",
                "state_file": str(moved_state),
                "rules": [FAST_RULE],
            },
        )

        event = daemon.wait_for_event("config_change_needs_restart")
        assert sorted(event["keys"]) == ["listen", "state_file"]
        # The rest of the edit applies; the ops server stays where it was (daemon.ops_url is
        # the old address) and the state file keeps its old path.
        wait_lock(daemon, "the rule part of the edit", rule="legacy-fast")
        daemon.wait_cycles(2)
        assert state.exists()
        assert not moved_state.exists()
        # Until a restart, the process runs with other values than its file says.
        assert metric(daemon, "tfc_watchdog_config_restart_required") == 1

        # Reverting the restart-only keys (the rule change stays) clears it: the file and
        # the process agree again.
        write_config(path, {**config, "rules": [FAST_RULE]})
        daemon.wait_for(
            lambda: metric(daemon, "tfc_watchdog_config_restart_required") == 0,
            what="the restart-required gauge to clear",
        )


def test_configmap_symlink_swap_is_caught_by_content(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    """Kubernetes mounts a ConfigMap as `config.yaml -> ..data/config.yaml`, `..data ->
    ..<timestamp>/`, and updates it by writing a new timestamped directory and renaming a new
    `..data` symlink over the old one. The new file here even gets the old file's mtime."""
    mount = tmp_path / "mount"
    mount.mkdir()
    config = base_config(simulator.url)
    first_dir = mount / "..2024_01_01_00_00_00.000000001"
    first_dir.mkdir()
    write_config(first_dir / "config.yaml", config)
    (mount / "..data").symlink_to(first_dir.name)
    path = mount / "config.yaml"
    path.symlink_to("..data/config.yaml")

    with running_daemon(path, ADMIN_TOKEN) as daemon:
        first_seen_lock(daemon, simulator)

        second_dir = mount / "..2024_01_01_00_05_00.000000002"
        second_dir.mkdir()
        new_file = write_config(second_dir / "config.yaml", {**config, "rules": [FAST_RULE]})
        old_stat = (first_dir / "config.yaml").stat()
        os.utime(new_file, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))
        (mount / "..data_tmp").symlink_to(second_dir.name)
        os.replace(mount / "..data_tmp", mount / "..data")
        for child in first_dir.iterdir():
            child.unlink()
        first_dir.rmdir()

        lock = wait_lock(daemon, "the swapped config to apply", rule="legacy-fast")
        assert lock["stale"] is True
        assert daemon.wait_for_event("config_reloaded")


def test_sighup_during_a_cycle_reloads_after_that_cycle(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    """One cycle plans and reports under one policy: a SIGHUP that arrives while a cycle
    waits on the API is applied when the cycle ends, not halfway through it."""
    # The first cycle's workspace list takes 4 s; with an hour between cycles, the first
    # cycle is the only one until the reload.
    simulator.inject_fault("latency", "/organizations/demo/workspaces", latency_ms=4000, count=1)
    config = base_config(simulator.url, interval="1h")
    config["tfc"]["timeout"] = "30s"
    path = write_config(tmp_path / "config.yaml", config)
    with running_daemon(path, ADMIN_TOKEN, ready=False) as daemon:

        def cycle_in_progress() -> bool:
            started = metric(daemon, "tfc_watchdog_cycles_total") or 0
            return started == 1 and daemon.cycles_completed() == 0

        daemon.wait_for(cycle_in_progress, what="the first cycle to be under way")
        write_config(path, {**config, "rules": [FAST_RULE]})
        daemon.process.send_signal(signal.SIGHUP)

        daemon.wait_for_event("config_reloaded")
        assert daemon.cycles_completed() == 1
        # The first cycle's report still carries the rule it ran under.
        assert locks(daemon)[WORKSPACE]["rule"] == "defaults"
