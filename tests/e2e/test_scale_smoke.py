"""The scale benchmark's smoke version (benchmarks/scale.py): counts, never times.

The real simulator process with a generated organization of 1,000 workspaces and no added
latency; the daemon's real config loading, runtime and cycle in a child process
(benchmarks.daemon_cycle). With the default config (two-tier polling, a full walk every
`tfc.full_scan_interval` = 10m) the first cycle walks every workspace: ceil(1000/100) = 10
list requests; the next, within the 10 minutes, lists only the workspaces whose current run
is not final: one filtered request. With `full_scan_interval: 0` every cycle is a full walk.
No action is planned (so nothing is re-read), and no 429.
"""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import yaml

from benchmarks.scale import run_daemon_cycles, write_config
from benchmarks.simproc import SimulatorProcess
from watchdog.model import NON_FINAL_STATUSES

pytestmark = pytest.mark.e2e

WORKSPACES = 1000
LIST = "GET /api/v2/organizations/:org/workspaces"
PAGES = math.ceil(WORKSPACES / 100)
FILTER = "filter[current-run][status]"


def test_1000_workspaces_cost_ten_list_requests_then_one_filtered_one_and_no_429(
    tmp_path: Path,
) -> None:
    with SimulatorProcess(WORKSPACES, locked="1%", start_timeout=60) as sim:
        default = write_config(tmp_path, sim.url, sim.organization)
        two_tier = run_daemon_cycles(sim, default, cycles=3, keep_requests=True)
        every_cycle = _every_cycle(default)
        full_walks = run_daemon_cycles(sim, every_cycle, cycles=2)

    full, fast, fast_again = two_tier["cycles"]
    assert full["requests"] == {"GET /organizations/:org/workspaces 200": PAGES}
    assert full["workspaces"] == WORKSPACES
    for cycle in (fast, fast_again):
        assert cycle["requests"] == {"GET /organizations/:org/workspaces 200": 1}
        # Listed: the workspaces with an active run, a few of the 1,000.
        assert 0 < cycle["workspaces"] < 100
    for cycle in two_tier["cycles"] + full_walks["cycles"]:
        assert cycle["complete"] is True
        assert cycle["rate_limited"] == 0
    # Every lock is still reported in the fast cycles: those the fast path does not list
    # (user and team locks) are carried from the full walk.
    assert two_tier["lock_series"] == round(WORKSPACES * 0.01)

    # What reached the simulator agrees with what the daemon counted.
    log = two_tier["simulator_log"]
    assert log["rate_limited"] == 0
    assert set(log["routes"]) <= {LIST, "GET /api/v2/ping"}
    assert log["routes"][LIST] == PAGES + 2
    filters = [parse_qs(e["query"]).get(FILTER) for e in two_tier["simulator_entries"]]
    assert filters.count([",".join(NON_FINAL_STATUSES)]) == 2

    for cycle in full_walks["cycles"]:
        assert cycle["requests"] == {"GET /organizations/:org/workspaces 200": PAGES}
        assert cycle["workspaces"] == WORKSPACES
    assert full_walks["simulator_log"]["routes"][LIST] == 2 * PAGES
    assert full_walks["lock_series"] == round(WORKSPACES * 0.01)


def _every_cycle(config: Path) -> Path:
    document = yaml.safe_load(config.read_text())
    document["tfc"]["full_scan_interval"] = 0
    path = config.with_name("every-cycle.yaml")
    path.write_text(yaml.safe_dump(document))
    return path
