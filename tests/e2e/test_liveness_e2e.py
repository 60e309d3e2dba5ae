"""An API outage, end to end: the real daemon stays alive and says it is not ready.

The simulator answers 503 to every API request for more than 10 intervals (interval 1 s).
Cycles keep ending (incomplete, counted as failures), so /livez and its older name /healthz
answer 200 the whole time: a Kubernetes liveness probe does not restart the pod, which
would drop the per-lock series and resolve their alerts. /readyz answers 503 once no cycle
has succeeded for 3 intervals, and `tfc_watchdog_last_success_timestamp_seconds` stands
still, which is what TfcWatchdogStalled fires on (deploy/prometheus/tests). When the API
comes back the daemon is ready again without a restart.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.daemon import DaemonProcess, base_config, running_daemon, write_config
from tests.support.simulator import ADMIN_TOKEN, SimulatorServer

# About 15 s: the client retries a 503 on a GET with backoff (about 12 s in all) before a
# cycle ends as failed, and the outage must outlast 10 intervals.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

OUTAGE_SECONDS = 11.0  # more than 10 intervals of 1 s


def sample(daemon: DaemonProcess, name: str) -> float:
    for line in daemon.get("/metrics").text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            return float(parts[1])
    raise AssertionError(f"{name} not exported")


def status(daemon: DaemonProcess, path: str) -> int:
    try:
        return daemon.get(path).status_code
    except httpx.TransportError:
        return 0


def test_an_api_outage_keeps_the_daemon_alive_and_not_ready(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "config.yaml", base_config(simulator.url, interval="1s"))
    with running_daemon(path, ADMIN_TOKEN) as daemon:
        daemon.wait_cycles(1)
        last_success = sample(daemon, "tfc_watchdog_last_success_timestamp_seconds")
        failures = sample(daemon, "tfc_watchdog_cycle_failures_total")
        started_cycles = sample(daemon, "tfc_watchdog_cycles_total")

        simulator.inject_fault("status", status=503)
        began = time.monotonic()
        live: dict[str, list[int]] = {"/livez": [], "/healthz": []}
        ready_after_3_intervals: list[int] = []

        def failed_cycle_counted() -> bool:
            return sample(daemon, "tfc_watchdog_cycle_failures_total") > failures

        # A cycle already under way when the fault went in may still succeed (on a loaded
        # machine it often does): what must not move is the last success as it stood when
        # the first cycle failed.
        success_at_first_failure: float | None = None

        # More than 10 intervals, and at least until a cycle ended as failed (after the
        # client's retries): the probes are watched through both.
        while (elapsed := time.monotonic() - began) < OUTAGE_SECONDS or not (
            failed_cycle_counted() or elapsed > 90  # a guard against hanging
        ):
            for probe, seen in live.items():
                seen.append(status(daemon, probe))
            # A cycle that started just before the fault may still succeed: judge readiness
            # from 3 intervals plus one cycle's worth of retries after the outage began.
            if elapsed > 5:
                ready_after_3_intervals.append(status(daemon, "/readyz"))
            if success_at_first_failure is None and failed_cycle_counted():
                success_at_first_failure = sample(
                    daemon, "tfc_watchdog_last_success_timestamp_seconds"
                )
            time.sleep(0.2)
        if success_at_first_failure is None and failed_cycle_counted():
            # The first failure was seen by the loop's condition, which then ended the loop.
            success_at_first_failure = sample(daemon, "tfc_watchdog_last_success_timestamp_seconds")

        assert set(live["/healthz"]) == {200}, live["/healthz"]
        assert set(live["/livez"]) == {200}, live["/livez"]
        assert ready_after_3_intervals and set(ready_after_3_intervals) == {503}
        assert "no successful cycle for" in daemon.get("/readyz").text
        # The scheduler kept running cycles, all failing, and nothing succeeded.
        assert sample(daemon, "tfc_watchdog_cycles_total") > started_cycles
        assert failed_cycle_counted()
        assert success_at_first_failure is not None
        assert (
            sample(daemon, "tfc_watchdog_last_success_timestamp_seconds")
            == success_at_first_failure
        )
        assert daemon.process.poll() is None

        simulator.clear_faults()
        daemon.wait_for(
            lambda: status(daemon, "/readyz") == 200,
            timeout=30,
            what="the daemon to be ready again after the outage",
        )
        assert sample(daemon, "tfc_watchdog_last_success_timestamp_seconds") > last_success
