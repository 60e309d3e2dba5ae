"""The scale benchmark's smoke version (benchmarks/scale.py): counts, never times.

The real simulator process with a generated organization of 1,000 workspaces and no added
latency; the daemon's real config loading, runtime and cycle in a child process
(benchmarks.daemon_cycle). A cycle must cost ceil(1000/100) = 10 workspace-list requests and
nothing else (the default config plans no action, so nothing is re-read), and no 429.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks.scale import run_daemon_cycles, write_config
from benchmarks.simproc import SimulatorProcess

pytestmark = pytest.mark.e2e

WORKSPACES = 1000
LIST = "GET /api/v2/organizations/:org/workspaces"
PAGES = math.ceil(WORKSPACES / 100)


def test_a_cycle_over_1000_workspaces_costs_ten_list_requests_and_no_429(tmp_path: Path) -> None:
    with SimulatorProcess(WORKSPACES, locked="1%", start_timeout=60) as sim:
        config = write_config(tmp_path, sim.url, sim.organization)
        result = run_daemon_cycles(sim, config, cycles=2)

    for cycle in result["cycles"]:
        assert cycle["complete"] is True
        assert cycle["workspaces"] == WORKSPACES
        assert cycle["requests"] == {"GET /organizations/:org/workspaces 200": PAGES}
        assert cycle["rate_limited"] == 0
    log = result["simulator_log"]
    # What reached the simulator agrees with what the daemon counted.
    assert log["rate_limited"] == 0
    assert set(log["routes"]) <= {LIST, "GET /api/v2/ping"}
    assert log["routes"][LIST] == 2 * PAGES
    assert result["lock_series"] == round(WORKSPACES * 0.01)
