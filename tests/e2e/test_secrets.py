"""The API token never leaks: logs, /metrics, /locks, error messages. A bad token is loud.

A recognisable canary token is registered with the simulator as the admin team's token and
the daemon runs a representative scenario (dry-run, then enforcing, with faults on the way);
every byte the daemon wrote and served is searched for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import (
    DaemonProcess,
    base_config,
    run_cli,
    running_daemon,
    write_config,
)
from tests.support.receiver import receiver
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer

pytestmark = pytest.mark.e2e

CANARY = "tfc-SECRET-canary-0123456789"
EXPIRED = "tfc-SECRET-canary-expired-9876543210"
# Notification URLs hold secrets too (webhook keys, tokens, passwords).
URL_CANARY = "hookSECRETcanary42"
MM_CANARY = "mmostsecretcanary0123456789"


def _register_canary(simulator: SimulatorServer) -> None:
    world = simulator.simulator.world
    world.tokens[CANARY] = world.tokens[ADMIN_TOKEN]


def _everything(daemon: DaemonProcess) -> str:
    served = [daemon.get(path).text for path in ("/metrics", "/locks", "/readyz", "/healthz")]
    return "\n".join([*daemon.lines, *served])


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "enforce"])
def test_the_token_appears_nowhere_under_faults(
    simulator: SimulatorServer, tmp_path: Path, dry_run: bool
) -> None:
    _register_canary(simulator)
    config = base_config(
        simulator.url,
        dry_run=dry_run,
        interval=0.1,
        defaults={"actions": ["cancel", "force_cancel", "discard", "force_unlock"]},
    )
    config["tfc"]["timeout"] = 0.3
    with receiver() as failing:
        failing.mode = "error"  # every message fails: the failure is logged and counted
        urls_file = tmp_path / "urls"
        urls_file.write_text(failing.mattermost_url(MM_CANARY) + "\n")
        config["notifications"] = [
            {
                "id": "oncall",
                "urls": [f"json://user:{URL_CANARY}@127.0.0.1:{failing.port}/{URL_CANARY}"],
                "timeout": "1s",
            },
            {"id": "from-file", "urls_file": str(urls_file), "timeout": "1s"},
        ]
        path = write_config(tmp_path / "config.yaml", config)
        with running_daemon(path, CANARY) as daemon:
            daemon.wait_cycles(3)
            for kind, status in (("status", 500), ("status", 401), ("malformed", 200), ("drop", 0)):
                simulator.inject_fault(kind, r"^/api/v2/", status=status or 500, count=3)
                daemon.wait_cycles(2)
            simulator.clear_faults()
            daemon.wait_cycles(2)
            everything = _everything(daemon)
        everything += "\n".join(daemon.lines)
        # The messages were tried (the URLs were used), and failed loudly but masked.
        assert failing.received, "no notification reached the receiver"
    assert daemon.events("notification_not_sent")
    assert (
        'tfc_watchdog_notifications_total{event="run_stuck",outcome="failed",target="oncall"}'
        in everything
    )
    assert daemon.events("action") or daemon.events(), "the daemon logged nothing"
    assert CANARY not in everything
    assert CANARY[4:20] not in everything  # not even a fragment
    assert URL_CANARY not in everything
    assert MM_CANARY not in everything


def test_a_bad_notification_url_is_refused_without_showing_it(tmp_path: Path) -> None:
    config = {
        "tfc": {"organizations": ["demo"]},
        "notifications": [{"id": "oncall", "urls": [f"nosuch://{URL_CANARY}@host/x"]}],
    }
    path = write_config(tmp_path / "config.yaml", config)
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert "notifications[0].urls: urls[0] (nosuch://...)" in result.stderr
    assert URL_CANARY not in result.stdout + result.stderr


def test_a_bad_token_is_one_line_per_cycle_a_metric_and_not_ready(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = base_config(simulator.url, interval=0.2)
    path = write_config(tmp_path / "config.yaml", config)
    with running_daemon(path, EXPIRED, ready=False) as daemon:
        daemon.wait_cycles(4)
        readyz = daemon.get("/readyz")
        metrics = daemon.get("/metrics").text
        cycles = daemon.cycles_completed()
        lines = list(daemon.lines)
    assert readyz.status_code == 503
    assert "401" in readyz.text or "unauthorized" in readyz.text.lower()
    assert 'tfc_watchdog_observe_errors_total{reason="unauthorized",source="tfc"}' in metrics
    unauthorized = [
        line
        for line in lines
        if "unauthorized" in line.lower() or ("401" in line and "api_request" not in line)
    ]
    error_lines = [line for line in unauthorized if '"level": "error"' in line]
    # One error line per cycle (the organization that could not be read), not a flood.
    assert cycles <= len(error_lines) <= cycles + 2
    assert EXPIRED not in "\n".join(lines) + metrics + readyz.text


def test_verify_tls_off_logs_a_loud_warning(simulator: SimulatorServer, tmp_path: Path) -> None:
    config = base_config(simulator.url)
    config["tfc"]["verify_tls"] = False
    path = write_config(tmp_path / "config.yaml", config)
    with running_daemon(path, ADMIN_TOKEN) as daemon:
        warning = daemon.wait_for_event(
            "TLS VERIFICATION IS OFF: the API server's certificate is not checked; "
            "use tfc.ca_bundle for a private CA instead"
        )
    assert warning["level"] == "warning"


def test_a_self_signed_server_is_refused_without_ca_bundle_and_works_with_it(
    start_simulator: Any, tmp_path: Path
) -> None:
    with start_simulator(tls=True) as simulator:
        plain = base_config(simulator.url)
        path = write_config(tmp_path / "plain.yaml", plain)
        refused = run_cli("run", "--once", "--config", str(path), token=CANARY, timeout=60)
        assert refused.returncode == 1
        output = refused.stdout + refused.stderr
        assert "tls" in output.lower() or "certificate" in output.lower()
        assert "Traceback" not in output
        assert CANARY not in output

        _register_canary(simulator)
        trusted = base_config(simulator.url)
        trusted["tfc"]["ca_bundle"] = str(simulator.ca_file)
        path = write_config(tmp_path / "trusted.yaml", trusted)
        works = run_cli("run", "--once", "--config", str(path), token=CANARY, timeout=60)
        assert works.returncode == 0, works.stdout[-2000:] + works.stderr[-2000:]
        assert CANARY not in works.stdout + works.stderr
