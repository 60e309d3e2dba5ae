"""Contract: `filter[current-run][status]` on the workspace list, and the switches that show
the watchdog a server getting it wrong (core.Settings.current_run_filter)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.simulator import SimulatorServer


def _names(sim: SimulatorServer, status: str) -> tuple[int, set[str]]:
    with sim.client() as api:
        answer = api.get(
            "organizations/demo/workspaces",
            params={"page[size]": 100, "filter[current-run][status]": status},
        )
    body: dict[str, Any] = answer.json()
    if answer.status_code != 200:
        return answer.status_code, set()
    return answer.status_code, {ws["attributes"]["name"] for ws in body["data"]}


def _all_names(sim: SimulatorServer) -> set[str]:
    return {ws["name"] for ws in sim.state("demo")["organizations"]["demo"]}


def test_one_status_and_a_comma_list_select_by_the_current_runs_status(simulator):
    assert _names(simulator, "applying") == (200, {"payments-prod"})
    assert _names(simulator, "applying,planned") == (200, {"payments-prod", "billing-staging"})
    assert _names(simulator, "no-such-status") == (200, set())


def test_a_server_that_ignores_the_filter_lists_every_workspace(simulator):
    simulator.settings(current_run_filter="ignore")
    assert _names(simulator, "applying") == (200, _all_names(simulator))


def test_a_server_that_rejects_comma_lists_answers_400_and_applies_one_status(simulator):
    simulator.settings(current_run_filter="reject_list")
    assert _names(simulator, "applying,planned") == (400, set())
    assert _names(simulator, "applying") == (200, {"payments-prod"})


def test_a_server_that_answers_an_empty_set(simulator):
    simulator.settings(current_run_filter="empty")
    assert _names(simulator, "applying") == (200, set())
    assert len(_names(simulator, "")[1]) == len(_all_names(simulator))  # no filter: all


def test_an_unknown_filter_mode_is_refused(simulator):
    with pytest.raises(Exception, match="current_run_filter"):
        simulator.settings(current_run_filter="sometimes")
