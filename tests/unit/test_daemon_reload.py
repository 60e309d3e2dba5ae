"""The daemon's config reload when the file goes away: a failed reload, counted and said once.

A deleted (or unreadable) config file, noticed by SIGHUP or by the check before a cycle, is a
rejected reload like an invalid edit: `tfc_watchdog_config_reload_failures_total` counts it,
one `config_reload_rejected` line names the file and the reason, and the running policy
carries on. The check before each cycle reports a missing file once, not every cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from watchdog.configload import load_policy
from watchdog.daemon import Daemon

CONFIG = "tfc: {address: 'http://127.0.0.1:9', organizations: [acme]}\ninterval: 30s\n"


def daemon_for(tmp_path: Path) -> tuple[Daemon, Path]:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return Daemon(load_policy(str(path), {}), None, path), path


def failures(daemon: Daemon) -> float:
    value = daemon.metrics.registry.get_sample_value("tfc_watchdog_config_reload_failures_total")
    assert value is not None
    return value


def rejected(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "config_reload_rejected"]


def test_sighup_after_the_file_was_deleted_is_a_counted_failed_reload(tmp_path: Path) -> None:
    daemon, path = daemon_for(tmp_path)
    policy = daemon.policy
    path.unlink()
    with structlog.testing.capture_logs() as logs:
        daemon._reload(force=True)
    assert failures(daemon) == 1
    (line,) = rejected(logs)
    assert line["log_level"] == "error"
    (error,) = line["errors"]
    assert error.startswith(f"{path}: cannot read the config file: ")
    assert "No such file or directory" in error
    assert "\n" not in error
    assert daemon.policy is policy


def test_a_missing_file_is_reported_once_by_the_cycle_check_and_at_each_sighup(
    tmp_path: Path,
) -> None:
    daemon, path = daemon_for(tmp_path)
    path.unlink()
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            daemon._reload(force=False)
        assert failures(daemon) == 1
        daemon._reload(force=True)
    assert failures(daemon) == 2
    assert len(rejected(logs)) == 2


def test_the_files_return_is_a_successful_reload_again(tmp_path: Path) -> None:
    daemon, path = daemon_for(tmp_path)
    path.unlink()
    daemon._reload(force=True)
    daemon.metrics.config_last_reload_success.set(0)
    path.write_text(CONFIG)
    with structlog.testing.capture_logs() as logs:
        daemon._reload(force=False)
    assert [entry["event"] for entry in logs] == ["config_reloaded"]
    assert logs[0]["changed"] == []
    loaded = daemon.metrics.registry.get_sample_value(
        "tfc_watchdog_config_last_reload_success_timestamp_seconds"
    )
    assert loaded is not None and loaded > 0
    assert failures(daemon) == 1


def reload_successful(daemon: Daemon) -> float | None:
    return daemon.metrics.registry.get_sample_value("tfc_watchdog_config_last_reload_successful")


def test_the_reload_state_gauge_holds_0_while_the_file_is_bad_and_1_once_it_is_good(
    tmp_path: Path,
) -> None:
    """The counter says a reload failed once; the gauge says the file is bad right now, so
    an alert can hold on it until the file is fixed (PrometheusBadConfig style)."""
    daemon, path = daemon_for(tmp_path)
    assert reload_successful(daemon) == 1
    path.write_text("interval: [not, a, duration]\n")
    daemon._reload(force=False)
    assert reload_successful(daemon) == 0
    # Unchanged bad file: still bad, still 0 (the check before each cycle reads no news).
    daemon._reload(force=False)
    assert reload_successful(daemon) == 0
    path.write_text(CONFIG)
    daemon._reload(force=False)
    assert reload_successful(daemon) == 1
    path.unlink()
    daemon._reload(force=False)
    assert reload_successful(daemon) == 0
