"""Adaptive stuck-run thresholds end to end: the real daemon and `scan` against the real
simulator, whose workspaces carry `apply-duration-average` as the scenario sets it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Harness, StartSimulator, post_paths, scenario
from tests.support.daemon import base_config, run_cli, write_config
from tests.support.simulator import ADMIN_TOKEN

pytestmark = pytest.mark.e2e


def applying_for(name: str, age: str, **averages: str) -> dict[str, Any]:
    return {
        "name": name,
        **averages,
        "runs": [
            {"status": "applied", "age": "3d", "by": "alice"},
            {"status": "applying", "age": age, "by": "alice"},
        ],
    }


ADAPTIVE = {
    "dry_run": False,
    "defaults": {"actions": ["cancel"]},  # applying: the fixed default 6h
    "rules": [
        {
            "id": "adaptive",
            "match": {"workspaces": ["quick", "steady"]},
            "run_stuck_after": {"applying": {"factor": 4, "min": "30m", "max": "12h"}},
        }
    ],
}


def test_a_short_apply_average_cancels_a_stuck_apply_long_before_the_fixed_default(
    start_simulator: StartSimulator, harness: Harness
) -> None:
    # All three applies have run 1h: far below the fixed 6h. `quick` usually applies in 10m
    # (threshold 4 x 10m = 40m: stuck); `steady` in 1h (threshold 4h: fine); `fixed` has no
    # rule (6h: fine).
    workspaces = [
        applying_for("quick", "1h", apply_duration_average="10m"),
        applying_for("steady", "1h", apply_duration_average="1h"),
        applying_for("fixed", "1h", apply_duration_average="10m"),
    ]
    with start_simulator(scenario=scenario(workspaces)) as sim:
        quick = sim.workspace("quick")["current_run"]["id"]
        config = write_config(harness.tmp_path / "scan.yaml", base_config(sim.url, **ADAPTIVE))
        table = run_cli("scan", "--config", str(config), token=ADMIN_TOKEN)
        assert f"run {quick} applying for 1h00m, threshold 40m (4 x apply average 10m)" in (
            table.stdout
        ), table.stdout
        with harness.daemon(sim, **ADAPTIVE) as daemon:
            event = daemon.wait_for_event("action", outcome="done", action="cancel")
            daemon.wait_cycles(2)
        assert post_paths(sim) == [f"/api/v2/runs/{quick}/actions/cancel"]
        assert event["threshold"] == "40m"
        assert sim.workspace("steady")["current_run"]["status"] == "applying"
        assert sim.workspace("fixed")["current_run"]["status"] == "applying"
